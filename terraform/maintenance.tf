# Delta tables' maintenance (target.format: delta): for each job in delta_maintenance,
# EventBridge Scheduler starts a task of the default size running `sluice optimize --job
# ID` (packs the small files its runs left into files of its file_size, one commit with
# the same rows) and later `sluice vacuum --job ID --retain R` (removes the files no version
# of the retention reads). Both hold the job's lease: a run of the job that meets one exits
# 3 (busy), which the state machine skips, and one that meets a run exits 3 too and waits
# for its next schedule. Readers of any retained version are unaffected by either.

# Each is a schedule of `aws_scheduler_schedule.run_jobs` (stepfunctions.tf) whose target
# is the cluster instead of the state machine.
locals {
  maintenance = merge(
    { for job, m in var.delta_maintenance : "optimize-${replace(job, "_", "-")}" => {
      expression = m.optimize
      max_age    = 3600
      command    = ["optimize", "--job", job]
    } },
    { for job, m in var.delta_maintenance : "vacuum-${replace(job, "_", "-")}" => {
      expression = m.vacuum
      max_age    = 3600
      command    = ["vacuum", "--job", job, "--retain", m.retain]
    } },
  )
}
