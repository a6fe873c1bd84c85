"""The Step Functions state machine: valid ASL (asl-validator), and executed in moto's
Step Functions engine against job rows in DynamoDB, ECS and SNS, with every task run as a
real sluice process that reports back through its task token; `sluice executions`
against it."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from conftest import REPO, render

TEMPLATE = (REPO / "stepfunctions" / "run_jobs.asl.json").read_text()
VALIDATOR = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice")) / "npm" / "node_modules" / ".bin" / "asl-validator"
ROWS = 25


def values(**overrides):
    base = {
        "jobs_table": "sluice-jobs",
        "cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/sluice",
        "task_definition": "sluice",
        "container_name": "sluice",
        "subnets": json.dumps(["subnet-0a", "subnet-0b"]),
        "security_groups": json.dumps(["sg-0a"]),
        "alert_topic_arn": "arn:aws:sns:us-east-1:123456789012:sluice-alerts",
        "max_concurrency": 4,
        "task_timeout_seconds": 21600,
        "heartbeat_seconds": 120,
        "heartbeat_every": "30s",
        "retry_interval_seconds": 60,
        "region": "us-east-1",
        "log_group_url": "$252Fecs$252Fsluice",
        "map_processor_config": json.dumps({"Mode": "INLINE"}),
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "processor",
    [{"Mode": "INLINE"}, {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}],
)
def test_the_definition_is_valid_asl(tmp_path, processor):
    rendered = render(TEMPLATE, values(map_processor_config=json.dumps(processor)))
    path = tmp_path / "definition.json"
    path.write_text(rendered)
    done = subprocess.run([str(VALIDATOR), "--json-definition", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tasks_report_through_their_token_and_retry_only_by_error_name():
    task = find_state(json.loads(render(TEMPLATE, values())), "Run task")
    assert task["Resource"] == "arn:aws:states:::ecs:runTask.waitForTaskToken"
    environment = {e["Name"]: e for e in task["Parameters"]["Overrides"]["ContainerOverrides"][0]["Environment"]}
    assert environment["SLUICE_TASK_TOKEN"]["Value.$"] == "$$.Task.Token"
    assert environment["SLUICE_HEARTBEAT_EVERY"]["Value"] == "30s"
    assert task["HeartbeatSeconds"] == 120
    retried = {name for retrier in task["Retry"] for name in retrier["ErrorEquals"]}
    assert "Sluice.Retryable" in retried and "States.HeartbeatTimeout" in retried
    assert not retried & {"Sluice.User", "Sluice.Internal", "Sluice.Busy", "States.ALL"}
    assert [c["ErrorEquals"] for c in task["Catch"]] == [["Sluice.Busy"], ["States.ALL"]]


def find_state(definition, name):
    """The state called `name`, at any depth."""
    if isinstance(definition, dict):
        if name in definition.get("States", {}):
            return definition["States"][name]
        for value in definition.values():
            found = find_state(value, name)
            if found is not None:
                return found
    if isinstance(definition, list):
        for value in definition:
            found = find_state(value, name)
            if found is not None:
                return found
    return None


def lower_camel(value):
    """Parameter names as moto's aws-sdk integration takes them (`taskDefinition`)."""
    if isinstance(value, dict):
        return {k[0].lower() + k[1:]: lower_camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_camel(v) for v in value]
    return value


def for_moto(rendered: str) -> str:
    """The one test-only change: moto's optimised ECS integration cannot take the
    production parameters, so "Run task" becomes the `aws-sdk:ecs:runTask` form of the
    same call, with the same callback pattern (`.waitForTaskToken`) and the same
    parameters in the casing moto's SDK integration takes."""
    definition = json.loads(rendered)
    task = find_state(definition, "Run task")
    assert task["Resource"] == "arn:aws:states:::ecs:runTask.waitForTaskToken"
    task["Resource"] = "arn:aws:states:::aws-sdk:ecs:runTask.waitForTaskToken"
    task["Parameters"] = lower_camel(task["Parameters"])
    return json.dumps(definition)


@pytest.fixture(scope="module")
def engine(endpoint):
    """moto's Step Functions engine, executing state machines."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request).read()


@dataclass
class Container:
    job: str
    attempt: int
    process: subprocess.Popen
    log: Path
    environment: dict


class Fargate:
    """Stands in for Fargate's agent: every task moto's ECS records is run as a real
    process — the container's command with the sluice binary, in the task definition's
    environment under the task's overrides (its task token among them). `shape(job,
    attempt, env)` lets a test make one attempt meet a different world: a database that
    is down (a changed URL), or a process that hangs ("hang": it is frozen with SIGSTOP
    once it has written its files, before its commit)."""

    def __init__(self, ecs, cluster, binary, env, logs, shape=None):
        self.ecs, self.cluster, self.binary, self.env, self.logs = ecs, cluster, binary, env, logs
        self.shape = shape or (lambda job, attempt, env: None)
        self.containers: list[Container] = []
        self.tasks: list[dict] = []
        self.frozen: dict[str, Container] = {}
        self.stopped = threading.Event()
        # Tasks of earlier executions ran under an earlier agent.
        self.seen = set(self.ecs.list_tasks(cluster=self.cluster)["taskArns"])
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopped.is_set():
            new = [a for a in self.ecs.list_tasks(cluster=self.cluster)["taskArns"] if a not in self.seen]
            if new:
                for task in self.ecs.describe_tasks(cluster=self.cluster, tasks=new)["tasks"]:
                    self.seen.add(task["taskArn"])
                    self.tasks.append(task)
                    self.start(task)
            time.sleep(0.2)

    def start(self, task):
        override = task["overrides"]["containerOverrides"][0]
        env = dict(self.env)
        env.update({e["name"]: e["value"] for e in override.get("environment", [])})
        job = override["command"][2]
        attempt = 1 + sum(1 for c in self.containers if c.job == job)
        action = self.shape(job, attempt, env)
        log = self.logs / f"{job}-{attempt}.log"
        with open(log, "w") as out:
            process = subprocess.Popen([self.binary, *override["command"]], env=env, stdout=out, stderr=subprocess.STDOUT)
        container = Container(job, attempt, process, log, env)
        self.containers.append(container)
        if action == "hang":
            threading.Thread(target=self.freeze_when_written, args=(container,), daemon=True).start()

    def freeze_when_written(self, container):
        for _ in range(600):
            if "failpoint written reached" in container.log.read_text():
                container.process.send_signal(signal.SIGSTOP)
                self.frozen[container.job] = container
                return
            time.sleep(0.1)

    def of(self, job):
        return [c for c in self.containers if c.job == job]

    def finish(self, timeout=60):
        """Waits for every container to exit (a frozen one is thawed first)."""
        for container in self.frozen.values():
            container.process.send_signal(signal.SIGCONT)
        for container in self.containers:
            container.process.wait(timeout=timeout)

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        for container in self.containers:
            if container.process.poll() is None:
                container.process.send_signal(signal.SIGCONT)
                container.process.kill()


@pytest.fixture
def world(aws, unique, tmp_path, postgres_database):
    """What the state machine needs around it: an ECS cluster, task definition and VPC; an
    SNS alert topic read through an SQS queue; a PostgreSQL source table; the test's job
    rows in a folder."""
    ecs = aws("ecs")
    cluster = ecs.create_cluster(clusterName=f"sluice-{unique}")["cluster"]["clusterArn"]
    family = f"sluice-{unique}"
    ecs.register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {"name": "sluice", "image": "sluice:test", "essential": True, "cpu": 1024, "memory": 2048}
        ],
    )
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    # As terraform/network.tf: interface endpoints with private DNS need DNS hostnames.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)
    ]
    group = ec2.create_security_group(GroupName=f"sluice-{unique}", Description="tasks", VpcId=vpc)["GroupId"]
    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=f"alerts-{unique}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{unique}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL)")
        conn.execute(f"INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, {ROWS}) i")

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "connections.yaml").write_text(
        yaml.safe_dump(
            {
                "source": {"kind": "postgres", "url": "postgres://${SFN_SOURCE}"},
                "flaky_source": {"kind": "postgres", "url": "postgres://${SFN_FLAKY}"},
            }
        )
    )

    def job(name, connection="source", table="items", enabled=True):
        row = {
            "job": name,
            "enabled": enabled,
            "source": {"connection": connection, "table": table, "primary_key": ["id"]},
            "mode": "full",
            "target": {"table": f"{name}_items"},
        }
        (jobs / f"{name}.yaml").write_text(yaml.safe_dump(row))

    job("steady")
    job("broken", table="no_such_table")
    job("flaky", connection="flaky_source")
    job("hung")
    job("off", enabled=False)
    (tmp_path / "logs").mkdir()

    def machine(**overrides):
        rendered = render(
            TEMPLATE,
            values(
                cluster_arn=cluster,
                task_definition=family,
                alert_topic_arn=topic,
                subnets=json.dumps(subnets),
                security_groups=json.dumps([group]),
                task_timeout_seconds=120,
                heartbeat_seconds=3,
                heartbeat_every="1s",
                retry_interval_seconds=1,
                **overrides,
            ),
        )
        return aws("stepfunctions").create_state_machine(
            name=f"sluice-{unique}-{len(overrides)}",
            definition=for_moto(rendered),
            roleArn="arn:aws:iam::123456789012:role/sluice-states",
        )["stateMachineArn"]

    def alerts():
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        return sorted(m["Body"] for m in messages)

    return dict(
        ecs=ecs,
        cluster=cluster,
        family=family,
        jobs=jobs,
        machine=machine,
        alerts=alerts,
        source_url=postgres_database,
        lake=tmp_path / "lake",
        state=tmp_path / "state",
        logs=tmp_path / "logs",
    )


def task_environment(world, sluice_env, jobs_location):
    """The task definition's environment (terraform/ecs.tf's, with local places)."""
    return dict(
        sluice_env,
        SLUICE_JOBS=jobs_location,
        SLUICE_STATE=str(world["state"]),
        SLUICE_LAKE=str(world["lake"]),
        SFN_SOURCE=world["source_url"].removeprefix("postgres://"),
        SFN_FLAKY=world["source_url"].removeprefix("postgres://"),
    )


def wait(sfn, execution_arn, timeout=120):
    for _ in range(timeout * 10):
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    raise AssertionError("the execution did not finish")


def test_the_state_machine_runs_each_enabled_job_and_alerts_on_a_failure(
    engine, aws, world, sluice, sluice_call, sluice_bin, sluice_env, unique
):
    # The job rows in DynamoDB, pushed as a deployment seeds them; one asks for a task
    # definition that was never registered.
    table = f"sfn-jobs-{unique}"
    sluice("init", "--jobs", f"dynamodb://{table}")
    sluice("jobs", "push", str(world["jobs"]), "--jobs", f"dynamodb://{table}")
    aws("dynamodb").update_item(
        TableName=table,
        Key={"item_type": {"S": "job"}, "id": {"S": "flaky"}},
        UpdateExpression="SET task_definition = :t",
        ExpressionAttributeValues={":t": {"S": f"sluice-large-{unique}"}},
    )
    machine = world["machine"](jobs_table=table, max_concurrency=2)
    fargate = Fargate(
        world["ecs"], world["cluster"], sluice_bin, task_environment(world, sluice_env, f"dynamodb://{table}"), world["logs"]
    )
    sfn = aws("stepfunctions")
    try:
        execution = sfn.start_execution(stateMachineArn=machine, name=f"scheduled-{unique}", input="{}")
        done = wait(sfn, execution["executionArn"])
        fargate.finish()
    finally:
        fargate.close()
    # broken and flaky (no task definition) failed, so the execution fails; every other
    # enabled job ran, and the disabled one did not.
    assert done["status"] == "FAILED", done
    assert done.get("error") == "Sluice.JobsFailed", done
    ran = sorted(c.job for c in fargate.containers)
    assert ran == ["broken", "hung", "steady"], ran
    assert [c.process.returncode for c in fargate.of("steady")] == [0]
    assert [c.process.returncode for c in fargate.of("broken")] == [2], fargate.of("broken")[0].log.read_text()

    for task in fargate.tasks:
        override = task["overrides"]["containerOverrides"][0]
        assert override["name"] == "sluice"
        assert override["command"][:2] == ["run", "--job"]
        environment = {e["name"]: e["value"] for e in override["environment"]}
        assert sorted(environment) == ["SLUICE_HEARTBEAT_EVERY", "SLUICE_TASK_TOKEN", "SLUICE_TRIGGER"]
        assert environment["SLUICE_TRIGGER"] == f"scheduled-{unique}"
        # The job id, the run id and the token: far below the 8 KiB override limit.
        assert len(json.dumps(task["overrides"])) < 2048
        assert task["launchType"] == "FARGATE"
        assert task["attachments"][0]["type"] == "ElasticNetworkInterface"
        assert task["taskDefinitionArn"].split("/")[-1].startswith(world["family"])

    # One alert per failed job: broken with sluice's error name and message, flaky with
    # the ECS error that kept its task from starting.
    alerts = world["alerts"]()
    assert len(alerts) == 2, alerts
    broken = next(a for a in alerts if "sluice job broken failed" in a)
    assert "(Sluice.User)" in broken and "no_such_table" in broken, broken
    assert f"sluice executions show scheduled-{unique}" in broken and "console.aws.amazon.com/cloudwatch" in broken
    assert any("sluice job flaky failed" in a for a in alerts), alerts

    # What the execution did, per job, from `sluice executions show`.
    shown = sluice_call("executions", "show", f"scheduled-{unique}", "--state-machine", machine)
    assert shown.returncode == 2, shown.stdout + shown.stderr  # the worst job's class: a user error
    lines = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[5:]}
    assert lines["steady"][1:3] == ["succeeded", "1"] and str(ROWS) in lines["steady"], shown.stdout
    broken_line = " ".join(lines["broken"])
    assert lines["broken"][1] == "failed" and "Sluice.User:" in broken_line and "no_such_table" in broken_line
    assert lines["off"][1] == "disabled", shown.stdout
    assert f"execution scheduled-{unique} FAILED" in shown.stdout and "Sluice.JobsFailed" in shown.stdout

    # An explicit list runs just those jobs; the execution succeeds, and its output holds
    # each job's run summary.
    fargate = Fargate(
        world["ecs"], world["cluster"], sluice_bin, task_environment(world, sluice_env, f"dynamodb://{table}"), world["logs"]
    )
    try:
        started = sluice_call(
            "executions", "start", "--job", "steady", "--name", f"manual-{unique}", "--watch", "--state-machine", machine
        )
        fargate.finish()
    finally:
        fargate.close()
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"started manual-{unique}: steady" in started.stdout
    assert f"steady: succeeded, {ROWS} rows in" in started.stdout, started.stdout
    assert f"execution manual-{unique} SUCCEEDED" in started.stdout
    assert [c.job for c in fargate.containers] == ["steady"]
    output = json.loads(sfn.describe_execution(executionArn=f"{machine.replace(':stateMachine:', ':execution:')}:manual-{unique}")["output"])
    [result] = output["results"]
    assert result["job"] == "steady" and result["status"] == "succeeded"
    assert result["summary"]["rows"] == ROWS and result["summary"]["trigger"] == f"manual-{unique}"
    assert result["summary"]["status"] == "committed", result

    listed = sluice("executions", "list", "--state-machine", machine)
    assert listed.splitlines()[0].split()[-1] == f"manual-{unique}", listed
    assert f"scheduled-{unique}" in listed

    # With the distributed Map the iterations are child executions: the jobs' outcomes
    # come from the Map's output.
    distributed = world["machine"](map_processor_config=json.dumps({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}))
    fargate = Fargate(
        world["ecs"], world["cluster"], sluice_bin, task_environment(world, sluice_env, f"dynamodb://{table}"), world["logs"]
    )
    try:
        started = sluice_call("executions", "start", "--job", "steady", "--job", "broken", "--watch", "--state-machine", distributed)
        fargate.finish()
    finally:
        fargate.close()
    assert started.returncode == 2, started.stdout + started.stderr
    assert "steady: succeeded" in started.stdout and "broken: failed" in started.stdout, started.stdout
    assert "Sluice.User: " in started.stdout


def test_a_retryable_failure_is_retried_and_a_hung_task_is_caught(
    engine, world, sluice, sluice_call, sluice_bin, sluice_env, unique, aws
):
    def shape(job, attempt, env):
        if job == "flaky" and attempt == 1:
            # The database is down: nothing listens on its port.
            env["SFN_FLAKY"] = "sluice@127.0.0.1:9/none"
        if job == "steady":
            # Slower than HeartbeatSeconds (3 s): only its heartbeats keep it alive.
            env["SLUICE_FAILPOINT"] = "written:5"
        if job == "hung":
            env["SLUICE_FAILPOINT"] = "written"
            return "hang"
        return None

    machine = world["machine"]()
    fargate = Fargate(
        world["ecs"], world["cluster"], sluice_bin, task_environment(world, sluice_env, str(world["jobs"])), world["logs"], shape
    )
    try:
        started = sluice_call(
            "executions", "start", "--job", "steady", "--job", "flaky", "--job", "broken", "--job", "hung",
            "--name", f"mixed-{unique}", "--state-machine", machine,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        watched = sluice_call("executions", "watch", f"mixed-{unique}", "--state-machine", machine, timeout=180)
        fargate.finish()
    finally:
        fargate.close()

    # flaky: its first attempt exited 75 and reported Sluice.Retryable; the state machine
    # ran it again, and the second loaded the table.
    assert [c.process.returncode for c in fargate.of("flaky")] == [75, 0], [c.log.read_text() for c in fargate.of("flaky")]
    # broken reported Sluice.User: never retried.
    assert [c.process.returncode for c in fargate.of("broken")] == [2]
    # hung stopped heartbeating (frozen before its commit): the state timed it out. Once
    # thawed, its next heartbeat heard that the state machine no longer waits, and the run
    # stopped uncommitted (exit 130, its lease released).
    [hung] = fargate.of("hung")
    assert hung.process.returncode == 130, hung.log.read_text()
    assert "no longer waits for this task" in hung.log.read_text()
    state = json.loads(sluice("state", "show", "hung", "--state", str(world["state"])))
    assert state["lease"] is None, state

    # watch printed each job as it finished, then the outcome; its exit code is the worst
    # failed job's class (broken: a user error).
    assert watched.returncode == 2, watched.stdout + watched.stderr
    out = watched.stdout
    assert f"steady: succeeded, {ROWS} rows in" in out and "(1 attempt)" in out, out
    assert f"flaky: succeeded, {ROWS} rows in" in out and "(2 attempts)" in out, out
    assert "broken: failed after 1 attempt in" in out and "Sluice.User: " in out, out
    assert "hung: failed after 1 attempt in" in out, out
    assert out.splitlines()[-1].startswith(f"execution mixed-{unique} FAILED"), out

    shown = sluice_call("executions", "show", f"mixed-{unique}", "--state-machine", machine, "--output", "json")
    assert shown.returncode == 2
    report = json.loads(shown.stdout)
    jobs = {j["job"]: j for j in report["jobs"]}
    assert jobs["flaky"]["attempts"] == 2 and jobs["flaky"]["summary"]["rows"] == ROWS
    assert jobs["steady"]["summary"]["table"] == "steady_items" and jobs["steady"]["seconds"] > 5
    assert jobs["broken"]["error"] == "Sluice.User" and "no_such_table" in jobs["broken"]["cause"]
    # Step Functions names a missed heartbeat States.HeartbeatTimeout in a Retry and
    # States.Timeout in the event; moto uses the latter for both.
    assert jobs["hung"]["error"] in ("States.HeartbeatTimeout", "States.Timeout"), jobs["hung"]
    assert report["execution"]["status"] == "FAILED"
    assert sum(1 for c in fargate.containers if c.job == "steady") == 1


def test_the_cli_says_which_state_machine_is_wrong(sluice_call, engine):
    missing = sluice_call("executions", "list")
    assert missing.returncode == 2
    assert "give --state-machine ARN or set SLUICE_STATE_MACHINE" in missing.stderr

    malformed = sluice_call("executions", "show", "x", "--state-machine", "sluice-run-jobs")
    assert malformed.returncode == 2
    assert "not a state machine ARN" in malformed.stderr

    absent = "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine"
    unknown = sluice_call("executions", "start", "--all", "--state-machine", absent)
    assert unknown.returncode == 2, unknown.stderr
    assert "StateMachineDoesNotExist" in unknown.stderr and "no state machine" in unknown.stderr

    wrong = sluice_call("executions", "show", "arn:aws:states:us-east-1:123456789012:execution:other:x", "--state-machine", absent)
    assert wrong.returncode == 2 and "belongs to state machine `other`" in wrong.stderr
