"""The Step Functions state machine: valid ASL (asl-validator), and executed in moto's
Step Functions engine against job rows in DynamoDB, ECS and SNS."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, render

TEMPLATE = (REPO / "stepfunctions" / "run_jobs.asl.json").read_text()
VALIDATOR = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice")) / "npm" / "node_modules" / ".bin" / "asl-validator"


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
    """The one test-only change: moto cannot run `ecs:runTask.sync` with the production
    parameters, so "Run task" becomes the `aws-sdk:ecs:runTask` form (the same
    parameters, in the casing moto's SDK integration takes), whose output is RunTask's
    rather than the stopped task's."""
    definition = json.loads(rendered)
    task = find_state(definition, "Run task")
    assert task["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    task["Resource"] = "arn:aws:states:::aws-sdk:ecs:runTask"
    task["Parameters"] = lower_camel(task["Parameters"])
    task["ResultSelector"] = {"task_arn.$": "$.tasks[0].taskArn"}
    return json.dumps(definition)


def wait(sfn, execution_arn):
    for _ in range(600):
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    raise AssertionError("the execution did not finish")


def test_the_state_machine_runs_each_enabled_job_and_alerts_on_a_failure(aws, endpoint, sluice, unique, tmp_path):
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request).read()

    # Job rows: the demo's, pushed as a deployment seeds them; one disabled, one asking
    # for a task definition that was never registered.
    table = f"sfn-jobs-{unique}"
    sluice("init", "--jobs", f"dynamodb://{table}")
    jobs = tmp_path / "jobs"
    shutil.copytree(REPO / "jobs", jobs)
    sluice("jobs", "push", str(jobs), "--jobs", f"dynamodb://{table}")
    ddb = aws("dynamodb")
    ddb.update_item(
        TableName=table,
        Key={"item_type": {"S": "job"}, "id": {"S": "trucks"}},
        UpdateExpression="SET enabled = :f",
        ExpressionAttributeValues={":f": {"BOOL": False}},
    )
    ddb.update_item(
        TableName=table,
        Key={"item_type": {"S": "job"}, "id": {"S": "toll_events"}},
        UpdateExpression="SET task_definition = :t",
        ExpressionAttributeValues={":t": {"S": f"sluice-large-{unique}"}},
    )

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

    rendered = render(
        TEMPLATE,
        values(
            jobs_table=table,
            cluster_arn=cluster,
            task_definition=family,
            alert_topic_arn=topic,
            max_concurrency=2,
            subnets=json.dumps(subnets),
            security_groups=json.dumps([group]),
        ),
    )
    sfn = aws("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"sluice-{unique}",
        definition=for_moto(rendered),
        roleArn="arn:aws:iam::123456789012:role/sluice-states",
    )["stateMachineArn"]

    execution = sfn.start_execution(stateMachineArn=machine, name=f"scheduled-{unique}", input="{}")
    done = wait(sfn, execution["executionArn"])
    # toll_events failed, so the execution fails; every other enabled job ran.
    assert done["status"] == "FAILED", done
    assert done.get("error") == "Sluice.JobsFailed", done

    task_arns = ecs.list_tasks(cluster=cluster)["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=task_arns)["tasks"]
    by_job = {}
    for task in tasks:
        override = task["overrides"]["containerOverrides"][0]
        assert override["name"] == "sluice"
        assert override["command"][:2] == ["run", "--job"]
        assert override["environment"] == [{"name": "SLUICE_TRIGGER", "value": f"scheduled-{unique}"}]
        # Only the job id and the run id: far below the 8 KiB override limit.
        assert len(json.dumps(task["overrides"])) < 1024
        assert task["launchType"] == "FARGATE"
        assert task["attachments"][0]["type"] == "ElasticNetworkInterface"
        assert task["taskDefinitionArn"].split("/")[-1].startswith(family)
        by_job[override["command"][2]] = task
    assert sorted(by_job) == ["bank_transactions", "customers", "gps_pings", "orders"], sorted(by_job)

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(messages) == 1, [m["Body"] for m in messages]
    alert = messages[0]["Body"]
    assert "sluice job toll_events failed (Sluice.TaskError)" in alert, alert
    assert f"scheduled-{unique}" in alert and "console.aws.amazon.com/cloudwatch" in alert, alert

    # An explicit list runs just those jobs, and the execution succeeds.
    named = sfn.start_execution(
        stateMachineArn=machine, name=f"manual-{unique}", input=json.dumps({"jobs": ["orders"]})
    )
    assert wait(sfn, named["executionArn"])["status"] == "SUCCEEDED"
    after = ecs.list_tasks(cluster=cluster)["taskArns"]
    new = ecs.describe_tasks(cluster=cluster, tasks=[t for t in after if t not in task_arns])["tasks"]
    assert [t["overrides"]["containerOverrides"][0]["command"] for t in new] == [["run", "--job", "orders"]]
