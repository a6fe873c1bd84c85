variable "name" {
  description = "Prefix of every resource name (tables, bucket, cluster, state machine)."
  type        = string
  default     = "sluice"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,23}$", var.name))
    error_message = "name is 3 to 24 lower-case letters, digits or '-', starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the platform."
  type        = string
  default     = "eu-central-1"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; must not overlap the on-premise network."
  type        = string
  default     = "10.80.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block such as 10.80.0.0/16."
  }
}

variable "private_subnet_cidrs" {
  description = "CIDRs of the private subnets the tasks run in, one per availability zone (two or three)."
  type        = list(string)
  default     = ["10.80.1.0/24", "10.80.2.0/24"]

  validation {
    condition     = length(var.private_subnet_cidrs) >= 2 && length(var.private_subnet_cidrs) <= 3 && alltrue([for c in var.private_subnet_cidrs : can(cidrnetmask(c))])
    error_message = "Give two or three IPv4 CIDR blocks inside vpc_cidr."
  }
}

variable "availability_zones" {
  description = "Availability zones of the private subnets, one per entry of private_subnet_cidrs (pinned, so that a new zone never changes the network)."
  type        = list(string)
  default     = ["eu-central-1a", "eu-central-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2 && alltrue([for z in var.availability_zones : can(regex("^[a-z]{2}(-[a-z]+)+-\\d[a-z]$", z))])
    error_message = "Give at least two availability zone names such as eu-central-1a."
  }
}

variable "onprem_cidr" {
  description = "CIDR of the on-premise network that holds the source databases (routed over the VPN)."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.onprem_cidr))
    error_message = "onprem_cidr must be an IPv4 CIDR block such as 192.168.10.0/24."
  }
}

variable "onprem_db_port" {
  description = "The port of the on-premise database; the only port the tasks may reach on-premise (5432 PostgreSQL, 3306 MySQL/MariaDB)."
  type        = number
  default     = 5432

  validation {
    condition     = var.onprem_db_port > 0 && var.onprem_db_port < 65536
    error_message = "onprem_db_port must be a TCP port (1-65535)."
  }
}

variable "customer_gateway_ip" {
  description = "Public IPv4 address of the on-premise VPN device."
  type        = string

  validation {
    condition     = can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", var.customer_gateway_ip))
    error_message = "customer_gateway_ip must be an IPv4 address."
  }
}

variable "customer_gateway_bgp_asn" {
  description = "BGP ASN of the on-premise VPN device (the VPN uses static routes; AWS still requires an ASN)."
  type        = number
  default     = 65000

  validation {
    condition     = var.customer_gateway_bgp_asn >= 1 && var.customer_gateway_bgp_asn <= 4294967295
    error_message = "customer_gateway_bgp_asn must be a valid ASN."
  }
}

variable "image_tag" {
  description = "Tag of the sluice image in the ECR repository to run (immutable tags: the build's commit)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,128}$", var.image_tag))
    error_message = "image_tag must be a valid image tag."
  }
}

variable "task_cpu" {
  description = "CPU units of the default task (1024 = 1 vCPU)."
  type        = number
  default     = 2048

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "task_memory" {
  description = "Memory of the default task in MiB; a run's memory budget (SLUICE_MEMORY_LIMIT, its peak RSS) is three quarters of it."
  type        = number
  default     = 4096

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880
    error_message = "task_memory must be between 512 and 122880 MiB, and fit task_cpu."
  }
}

variable "max_concurrency" {
  description = "How many jobs run at once: keep it low enough for the on-premise database and the VPN."
  type        = number
  default     = 4

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 40
    error_message = "max_concurrency must be between 1 and 40."
  }
}

variable "distributed_map" {
  description = "Run the job list with a distributed Map (for thousands of job rows) instead of the inline one."
  type        = bool
  default     = false
}

variable "task_timeout_seconds" {
  description = "How long one job's task may run before Step Functions stops waiting for it."
  type        = number
  default     = 21600

  validation {
    condition     = var.task_timeout_seconds >= 60 && var.task_timeout_seconds <= 86400
    error_message = "task_timeout_seconds must be between 60 and 86400."
  }
}

variable "task_heartbeat_seconds" {
  description = "How long a job's task may go without a heartbeat before Step Functions counts it dead or hung and retries it (the task beats four times as often)."
  type        = number
  default     = 120

  validation {
    condition     = var.task_heartbeat_seconds >= 20 && var.task_heartbeat_seconds <= 3600
    error_message = "task_heartbeat_seconds must be between 20 and 3600."
  }
}

variable "job_retry_interval_seconds" {
  description = "The first wait before a job that reported Sluice.Retryable (or stopped heartbeating) runs again; it doubles on each retry, with full jitter."
  type        = number
  default     = 60

  validation {
    condition     = var.job_retry_interval_seconds >= 1 && var.job_retry_interval_seconds <= 900
    error_message = "job_retry_interval_seconds must be between 1 and 900."
  }
}

variable "delta_maintenance" {
  description = "Jobs whose Delta tables are optimized and vacuumed on a schedule: job id => { optimize, vacuum (EventBridge Scheduler expressions), retain (how far back time travel must still work, e.g. 7d) }."
  type = map(object({
    optimize = string
    vacuum   = string
    retain   = string
  }))
  default = {
    orders = { optimize = "cron(30 2 * * ? *)", vacuum = "cron(30 3 ? * SUN *)", retain = "7d" }
  }

  validation {
    condition = alltrue([for m in values(var.delta_maintenance) :
      can(regex("^(cron|rate)\\(.+\\)$", m.optimize)) && can(regex("^(cron|rate)\\(.+\\)$", m.vacuum)) && can(regex("^[0-9]+[smhd]$", m.retain))
    ])
    error_message = "optimize and vacuum are EventBridge Scheduler expressions (cron(...) or rate(...)); retain is a duration such as 7d or 24h."
  }
}

variable "schedule_expression" {
  description = "When the jobs run: an EventBridge Scheduler expression, e.g. cron(15 * * * ? *) or rate(1 hour)."
  type        = string
  default     = "cron(15 * * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be cron(...) or rate(...)."
  }
}

variable "schedule_timezone" {
  description = "Time zone of the schedule expression."
  type        = string
  default     = "UTC"
}

variable "alert_email" {
  description = "E-mail address subscribed to job failure alerts; empty for none (subscribe other endpoints to the topic)."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@ ]+@[^@ ]+$", var.alert_email))
    error_message = "alert_email must be an e-mail address or empty."
  }
}

variable "freshness_alarms" {
  description = "Jobs whose freshness is alarmed on: job id -> the largest acceptable watermark lag in seconds."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for job, seconds in var.freshness_alarms : can(regex("^[a-z][a-z0-9_]{0,63}$", job)) && seconds >= 60])
    error_message = "Keys are job ids; values are at least 60 seconds."
  }
}

variable "log_retention_days" {
  description = "How long task, state machine and flow logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention of at least a year (365, 400, 545, 731, ...)."
  }
}

variable "lake_noncurrent_days" {
  description = "Days a replaced or deleted lake object version is kept (recovery window for full reloads and rewinds)."
  type        = number
  default     = 30

  validation {
    condition     = var.lake_noncurrent_days >= 1
    error_message = "lake_noncurrent_days must be at least 1."
  }
}

variable "gps_schedule_expression" {
  description = "When the GPS feed job (gps_positions) drains its queue."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.gps_schedule_expression))
    error_message = "gps_schedule_expression must be cron(...) or rate(...)."
  }
}

variable "gps_queue_retention_seconds" {
  description = "How long the GPS queue keeps a message; sluice remembers the committed message ids at least this long, so a redelivery is recognised."
  type        = number
  default     = 345600 # 4 days

  validation {
    condition     = var.gps_queue_retention_seconds >= 3600 && var.gps_queue_retention_seconds <= 1209600
    error_message = "gps_queue_retention_seconds must be between 3600 (1 hour) and 1209600 (14 days)."
  }
}

variable "gps_max_receive_count" {
  description = "Receives after which a GPS message that no run could commit moves to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.gps_max_receive_count >= 2 && var.gps_max_receive_count <= 1000
    error_message = "gps_max_receive_count must be between 2 and 1000."
  }
}

variable "gps_raw_message_delivery" {
  description = "Deliver the devices' messages to the queue without the SNS envelope (sluice reads both; with the envelope it deduplicates by the SNS MessageId)."
  type        = bool
  default     = false
}

variable "gps_max_age_seconds" {
  description = "Alarm when the oldest waiting GPS position is older than this."
  type        = number
  default     = 900

  validation {
    condition     = var.gps_max_age_seconds >= 300
    error_message = "gps_max_age_seconds must be at least 300."
  }
}

variable "feed_task_cpu" {
  description = "CPU units of the feed task the GPS schedule runs (256 = a quarter vCPU)."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024], var.feed_task_cpu)
    error_message = "feed_task_cpu must be 256, 512 or 1024."
  }
}

variable "feed_task_memory" {
  description = "Memory of the feed task in MiB (a 3,000-message run peaks under 128 MiB); a run's memory budget is three quarters of it."
  type        = number
  default     = 512

  validation {
    condition     = contains([512, 1024, 2048, 3072, 4096], var.feed_task_memory)
    error_message = "feed_task_memory must be a Fargate size for up to 1 vCPU: 512, 1024, 2048, 3072 or 4096."
  }
}

variable "partner_api_cidrs" {
  description = "The tag provider's API addresses (CIDRs) the tasks may reach on 443 through a NAT gateway; empty: no route to the internet at all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.partner_api_cidrs : can(cidrhost(c, 0))])
    error_message = "partner_api_cidrs holds CIDRs, such as 203.0.113.10/32."
  }
}

variable "public_subnet_cidr" {
  description = "CIDR of the small public subnet that holds the NAT gateway (only made with partner_api_cidrs or bank_sftp_cidrs)."
  type        = string
  default     = "10.80.250.0/28"
}

variable "bank_sftp_cidrs" {
  description = "The supplier's SFTP server addresses (CIDRs) the tasks may reach on bank_sftp_port through the NAT gateway; empty: none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.bank_sftp_cidrs : can(cidrhost(c, 0))])
    error_message = "bank_sftp_cidrs holds CIDRs, such as 198.51.100.7/32."
  }
}

variable "bank_sftp_port" {
  description = "The supplier's SFTP port."
  type        = number
  default     = 22

  validation {
    condition     = var.bank_sftp_port > 0 && var.bank_sftp_port < 65536
    error_message = "bank_sftp_port is a TCP port (1 to 65535)."
  }
}

variable "bank_schedule_expression" {
  description = "When the bank's files job (bank_transactions) runs: daily, after the bank's drop."
  type        = string
  default     = "cron(30 6 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.bank_schedule_expression))
    error_message = "bank_schedule_expression must be cron(...) or rate(...)."
  }
}

variable "api_schedule_expression" {
  description = "When the tag provider's API job (tag_transactions) runs."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.api_schedule_expression))
    error_message = "api_schedule_expression must be cron(...) or rate(...)."
  }
}

# --- The lake's SQL API (serve.tf) ---

variable "serve_enabled" {
  description = "Runs `sluice serve` (the lake's SQL API over HTTPS and Flight SQL) as an ECS service behind a load balancer."
  type        = bool
  default     = false
}

variable "serve_certificate_arn" {
  description = "The ACM certificate of the API's host name, for both HTTPS listeners (required with serve_enabled)."
  type        = string
  default     = ""

  validation {
    condition     = var.serve_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:", var.serve_certificate_arn))
    error_message = "serve_certificate_arn is an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "serve_allowed_cidrs" {
  description = "Who may reach the API (CIDRs): the third parties' and analysts' addresses."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.serve_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "serve_allowed_cidrs holds CIDRs, such as 203.0.113.0/24."
  }
}

variable "serve_public_subnet_cidrs" {
  description = "The two public subnets of the API's load balancer (inside vpc_cidr, in the first two availability_zones)."
  type        = list(string)
  default     = ["10.80.251.0/26", "10.80.251.64/26"]

  validation {
    condition     = length(var.serve_public_subnet_cidrs) == 2 && alltrue([for c in var.serve_public_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "Give two IPv4 CIDR blocks inside vpc_cidr."
  }
}

variable "serve_flight_port" {
  description = "The load balancer's port for Arrow Flight SQL (gRPC over TLS)."
  type        = number
  default     = 32010

  validation {
    condition     = var.serve_flight_port > 0 && var.serve_flight_port < 65536 && var.serve_flight_port != 443
    error_message = "serve_flight_port is a TCP port other than 443."
  }
}

variable "serve_engine" {
  description = "What answers the API's queries: local (DataFusion in the task, over the lake) or athena (the analysts' workgroup, for lakes and queries that outgrow a task)."
  type        = string
  default     = "local"

  validation {
    condition     = contains(["local", "athena"], var.serve_engine)
    error_message = "serve_engine is local or athena."
  }
}

variable "serve_cpu" {
  description = "CPU units of a serve task."
  type        = number
  default     = 1024
}

variable "serve_memory" {
  description = "Memory of a serve task in MiB; two thirds of it are shared by the queries that run at once."
  type        = number
  default     = 4096
}

variable "serve_max_concurrent" {
  description = "Queries a serve task runs at once (more wait a second, then get 503 and Retry-After)."
  type        = number
  default     = 4

  validation {
    condition     = var.serve_max_concurrent >= 1
    error_message = "serve_max_concurrent is at least 1."
  }
}

variable "serve_min_count" {
  description = "Serve tasks at the least (two: one per availability zone)."
  type        = number
  default     = 2
}

variable "serve_max_concurrent_per_key" {
  description = "Queries one API key may run at once in a serve task (more wait a second, then get 429 and Retry-After): no key takes every slot."
  type        = number
  default     = 2

  validation {
    condition     = var.serve_max_concurrent_per_key >= 1
    error_message = "serve_max_concurrent_per_key is at least 1."
  }
}

variable "serve_max_count" {
  description = "Serve tasks at the most, under load."
  type        = number
  default     = 6
}

variable "serve_requests_per_task" {
  description = "The load balancer's requests per task per minute that the service scales to keep."
  type        = number
  default     = 600
}

variable "serve_cors_origins" {
  description = "Browser origins allowed to call the HTTP API (CORS); empty: none."
  type        = list(string)
  default     = []
}

# --- The event collector (collect.tf) ---

variable "collect_enabled" {
  description = "Runs `sluice collect` (tracked events over HTTPS into SQS, then the lake) as an ECS service behind a load balancer."
  type        = bool
  default     = false
}

variable "collect_certificate_arn" {
  description = "The ACM certificate of the collector's host name, for its HTTPS listener (required with collect_enabled)."
  type        = string
  default     = ""

  validation {
    condition     = var.collect_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:", var.collect_certificate_arn))
    error_message = "collect_certificate_arn is an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "collect_allowed_cidrs" {
  description = "Who may send events (CIDRs): anywhere for apps and websites; the write keys and rates guard it."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.collect_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "collect_allowed_cidrs holds CIDRs, such as 0.0.0.0/0 or 203.0.113.0/24."
  }
}

variable "collect_public_subnet_cidrs" {
  description = "The two public subnets of the collector's load balancer (inside vpc_cidr, in the first two availability_zones)."
  type        = list(string)
  default     = ["10.80.252.0/26", "10.80.252.64/26"]

  validation {
    condition     = length(var.collect_public_subnet_cidrs) == 2 && alltrue([for c in var.collect_public_subnet_cidrs : can(cidrhost(c, 0))])
    error_message = "Give two IPv4 CIDR blocks inside vpc_cidr."
  }
}

variable "collect_cpu" {
  description = "CPU units of a collect task."
  type        = number
  default     = 256
}

variable "collect_memory" {
  description = "Memory of a collect task in MiB (a task peaks under 128 MiB at 5,000 events a second)."
  type        = number
  default     = 512
}

variable "collect_min_count" {
  description = "Collect tasks at the least (two: one per availability zone)."
  type        = number
  default     = 2
}

variable "collect_max_count" {
  description = "Collect tasks at the most, under load."
  type        = number
  default     = 10
}

variable "collect_requests_per_task" {
  description = "The load balancer's requests per task per minute that the service scales to keep."
  type        = number
  default     = 60000
}

variable "collect_client_ip" {
  description = "What a task keeps of a client's address: keep, truncate (the network only) or drop."
  type        = string
  default     = "truncate"

  validation {
    condition     = contains(["keep", "truncate", "drop"], var.collect_client_ip)
    error_message = "collect_client_ip is keep, truncate or drop."
  }
}

variable "collect_rate_limit" {
  description = "Events per second a write key may send when its entry names no rate_per_second (per task); 0: unbounded."
  type        = number
  default     = 0
}

variable "collect_cors_origins" {
  description = "Browser origins allowed to send events (CORS); empty: none (apps and servers need none)."
  type        = list(string)
  default     = []
}

variable "collect_schedule_expression" {
  description = "When the collector's jobs (collect_events, collect_aliases, collect_profiles) drain its queues into the lake."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.collect_schedule_expression))
    error_message = "collect_schedule_expression must be cron(...) or rate(...)."
  }
}

# --- The operators' console (console.tf) ---

variable "console_enabled" {
  description = "Runs `sluice console` (the operators' web page) as an ECS service behind an internal HTTPS load balancer."
  type        = bool
  default     = false
}

variable "console_certificate_arn" {
  description = "The ACM certificate of the console's host name, for its HTTPS listener (required with console_enabled)."
  type        = string
  default     = ""

  validation {
    condition     = var.console_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:", var.console_certificate_arn))
    error_message = "console_certificate_arn is an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "console_allowed_cidrs" {
  description = "The operators' networks (CIDRs, over the VPN or a peered VPC) that may reach the console; nothing else can."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.console_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "console_allowed_cidrs holds CIDRs, such as 10.20.0.0/16."
  }
}
