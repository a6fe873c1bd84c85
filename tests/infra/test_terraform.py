"""terraform/: no terraform binary can be installed here, so every file is parsed with
python-hcl2, every reference must resolve, every variable must be declared, described
and used, the tables must have the keys `sluice init` creates, and checkov must find
nothing (a check is skipped only inline, with a reason)."""

import json
import os
import re
import subprocess
from pathlib import Path

import hcl2
import pytest
from conftest import REPO

TF = REPO / "terraform"
FILES = sorted(TF.glob("*.tf"))


def unquote(value):
    """python-hcl2 keeps the quotes of labels and string literals: drop them."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parsed():
    out = {}
    for path in FILES:
        with path.open() as f:
            out[path.name] = unquote(hcl2.load(f))
    return out


def code(path: Path) -> str:
    """The file without comments, for finding references."""
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in path.read_text().splitlines())


def declared():
    variables, locals_, resources, data, modules = {}, set(), set(), set(), set()
    for doc in parsed().values():
        for block in doc.get("variable", []):
            variables.update(block)
        for block in doc.get("locals", []):
            locals_.update(block)
        for block in doc.get("resource", []):
            for kind, named in block.items():
                resources.update(f"{kind}.{n}" for n in named)
        for block in doc.get("data", []):
            for kind, named in block.items():
                data.update(f"{kind}.{n}" for n in named)
        for block in doc.get("module", []):
            modules.update(block)
    return variables, locals_, resources, data, modules


def test_every_file_parses_and_the_module_has_the_usual_layout():
    names = {p.name for p in FILES}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names
    assert (TF / "README.md").exists()
    docs = parsed()
    provider = docs["versions.tf"]["terraform"][0]["required_providers"][0]["aws"]
    assert provider["source"] == "hashicorp/aws" and provider["version"].startswith("~>")


def test_every_reference_resolves_and_every_variable_is_used():
    variables, locals_, resources, data, modules = declared()
    used_vars, problems = set(), []
    for path in FILES:
        text = code(path)
        for name in re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text):
            used_vars.add(name)
            if name not in variables:
                problems.append(f"{path.name}: var.{name} is not declared")
        for name in re.findall(r"\blocal\.(\w+)", text):
            if name not in locals_:
                problems.append(f"{path.name}: local.{name} is not defined")
        for name in re.findall(r"\bmodule\.(\w+)", text):
            if name not in modules:
                problems.append(f"{path.name}: module.{name} is not declared")
        for kind, name in re.findall(r"\bdata\.(\w+)\.(\w+)", text):
            if f"{kind}.{name}" not in data:
                problems.append(f"{path.name}: data.{kind}.{name} is not declared")
        for kind, name in re.findall(r"(?<![\w.\"])(aws_\w+)\.(\w+)", text):
            if f"{kind}.{name}" not in resources:
                problems.append(f"{path.name}: {kind}.{name} is not declared")
    problems += [f"variable {v} is declared but never used" for v in sorted(set(variables) - used_vars)]
    problems += [
        f"variable {v} has no description" for v, body in variables.items() if not body.get("description")
    ]
    assert not problems, "\n".join(problems)


def test_the_state_machine_template_gets_exactly_its_placeholders():
    template = (REPO / "stepfunctions" / "run_jobs.asl.json").read_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", template))
    blocks = parsed()["stepfunctions.tf"]["resource"]
    machine = next(b["aws_sfn_state_machine"]["run_jobs"] for b in blocks if "aws_sfn_state_machine" in b)
    given = set(re.findall(r"(\w+)\s*=", machine["definition"].split("{", 1)[1]))
    assert "templatefile" in machine["definition"]
    assert wanted <= given, f"not passed: {sorted(wanted - given)}"


def test_the_tables_have_the_keys_sluice_init_creates():
    source = (REPO / "engine" / "src" / "aws" / "dynamo.rs").read_text()
    defs = re.findall(
        r'what: "(\w+)",\s*hash_key: "(\w+)",\s*range_key: "(\w+)",\s*ttl_attribute: (None|Some\("(\w+)"\))',
        source,
    )
    assert len(defs) == 2, defs
    tables = parsed()["dynamodb.tf"]["resource"]
    by_name = {name: body for block in tables for name, body in block.get("aws_dynamodb_table", {}).items()}
    for what, hash_key, range_key, _, ttl in defs:
        table = by_name[what]
        assert (table["hash_key"], table["range_key"]) == (hash_key, range_key), what
        assert {a["name"]: a["type"] for a in table["attribute"]} == {hash_key: "S", range_key: "S"}
        assert table["billing_mode"] == "PAY_PER_REQUEST"
        assert table["point_in_time_recovery"][0]["enabled"] is True
        assert table["server_side_encryption"][0]["enabled"] is True
        if ttl:
            assert table["ttl"][0]["attribute_name"] == ttl


def test_checkov_finds_nothing():
    infra = Path(os.environ.get("INFRA_VENV", Path.home() / ".cache" / "sluice" / "infra-venv"))
    done = subprocess.run(
        [str(infra / "bin" / "checkov"), "-d", str(TF), "--framework", "terraform", "--skip-download",
         "--quiet", "--compact", "--output", "json"],
        capture_output=True, text=True,
    )
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [f'{c["check_id"]} {c["resource"]} ({c["file_path"]})' for c in report["results"]["failed_checks"]]
    assert done.returncode == 0 and summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 200
    # Every skip is inline and carries its reason.
    for path in FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"checkov:skip=CKV\w*_\d+:\S.{10,}", line), f"{path.name}: skip without a reason: {line}"


def policy_statements(name, file="iam.tf"):
    """The statements of `data "aws_iam_policy_document" NAME` in FILE, by sid."""
    for block in parsed()[file]["data"]:
        body = block.get("aws_iam_policy_document", {}).get(name)
        if body:
            return {s.get("sid"): s for s in body["statement"]}
    raise AssertionError(f"no policy document {name}")


def test_tasks_report_only_to_their_state_machine_and_operators_only_start_and_read_it():
    main = parsed()["main.tf"]["locals"][0]
    assert main["state_machine_arn"].endswith(":stateMachine:${local.state_machine_name}")
    machine = next(
        b["aws_sfn_state_machine"]["run_jobs"] for b in parsed()["stepfunctions.tf"]["resource"] if "aws_sfn_state_machine" in b
    )
    assert machine["name"] == "${local.state_machine_name}"

    task = policy_statements("task")
    states = [s for s in task.values() if any(a.startswith("states:") for a in s["actions"])]
    assert len(states) == 1, states
    assert sorted(states[0]["actions"]) == ["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"]
    assert states[0]["resources"] == ["${local.state_machine_arn}"]

    operators = policy_statements("operators")
    actions = sorted(a for s in operators.values() for a in s["actions"])
    assert actions == sorted([
        "states:StartExecution", "states:ListExecutions", "states:DescribeStateMachine",
        "states:DescribeExecution", "states:GetExecutionHistory",
    ])
    assert all(r.startswith("${local.state_machine") for s in operators.values() for r in s["resources"])

    # The callback integration needs neither the .sync integration's EventBridge rule nor
    # its task watching.
    machine_role = [a for s in policy_statements("states").values() for a in s["actions"]]
    assert not [a for a in machine_role if a.startswith("events:") or a in ("ecs:StopTask", "ecs:DescribeTasks")]
    # The tasks reach Step Functions without a NAT, through an interface endpoint.
    network = (TF / "network.tf").read_text()
    assert '"states"' in network


def resources(file, kind):
    return {name: body for b in parsed()[file].get("resource", []) for name, body in b.get(kind, {}).items()}


def test_the_sql_api_reads_the_lake_only_and_listens_on_https_only():
    serve = policy_statements("serve", "serve.tf")
    writes = [
        (sid, a) for sid, s in serve.items() for a in s["actions"]
        if a.startswith(("s3:Put", "s3:Delete", "glue:Create", "glue:Update", "glue:Batch", "dynamodb:"))
    ]
    # The one write: Athena's results, under their own prefix.
    assert [sid for sid, _ in writes] == ["AthenaResults"], writes
    assert serve["AthenaResults"]["resources"][0].endswith("/${local.athena_prefix}/*")
    assert all(r.endswith("/${local.lake_prefix}/*") for r in serve["ReadLake"]["resources"])
    assert serve["Query"]["resources"] == ["${aws_athena_workgroup.analysts.arn}"]

    listeners = resources("serve.tf", "aws_lb_listener")["serve"]
    assert listeners["protocol"] == "HTTPS" and listeners["ssl_policy"].startswith("ELBSecurityPolicy-TLS13")
    groups = resources("serve.tf", "aws_lb_target_group")["serve"]
    assert "/health" in groups["health_check"][0]["path"]
    balancer = resources("serve.tf", "aws_lb")["serve"]
    assert balancer["drop_invalid_header_fields"] is True and balancer["access_logs"][0]["enabled"] is True
    # Clients reach the balancer from the allowed addresses only; the tasks only from it.
    ingress = resources("serve.tf", "aws_vpc_security_group_ingress_rule")
    assert "var.serve_allowed_cidrs" in json.dumps(ingress["serve_lb_from_clients"])
    assert ingress["serve_from_lb"]["referenced_security_group_id"] == "${aws_security_group.serve_lb[0].id}"
    task = resources("serve.tf", "aws_ecs_task_definition")["serve"]
    assert "--keys" not in task["container_definitions"] and "SLUICE_SERVE_KEYS_SECRET" in task["container_definitions"]


def test_a_stopping_sql_api_task_drains_within_its_stop_timeout_and_keys_share_the_slots():
    task = resources("serve.tf", "aws_ecs_task_definition")["serve"]["container_definitions"]
    locals_ = {k: v for b in parsed()["serve.tf"]["locals"] for k, v in b.items()}
    drain = int(locals_["serve_drain_seconds"])
    # `sluice serve --drain` lets requests in flight finish; ECS kills the task only after
    # stopTimeout, so the drain must end before it.
    assert '"--drain", "${local.serve_drain_seconds}s"' in task
    assert "stopTimeout = local.serve_drain_seconds + 10" in task
    assert 0 < drain and drain + 10 <= 120  # Fargate's largest stop timeout
    assert '"--max-concurrent-per-key", tostring(var.serve_max_concurrent_per_key)' in task
    variables = {k: v for b in parsed()["variables.tf"]["variable"] for k, v in b.items()}
    assert variables["serve_max_concurrent_per_key"]["default"] == 2


def test_the_console_reads_and_only_starts_executions_behind_an_internal_https_balancer():
    console = policy_statements("console", "console.tf")
    actions = {a for s in console.values() for a in s["actions"]}
    writes = sorted(a for a in actions if a.startswith((
        "s3:Put", "s3:Delete", "glue:Create", "glue:Update", "glue:Delete", "glue:Batch",
        "dynamodb:Put", "dynamodb:Update", "dynamodb:Delete", "dynamodb:BatchWrite", "states:Stop",
    )))
    assert writes == [], writes
    assert console["RunNow"]["actions"] == ["states:StartExecution"]
    assert console["RunNow"]["resources"] == ["${aws_sfn_state_machine.run_jobs.arn}"]
    assert all(r.endswith("/${local.lake_prefix}/*") for r in console["ReadLake"]["resources"])
    balancer = resources("console.tf", "aws_lb")["console"]
    assert balancer["internal"] is True and balancer["drop_invalid_header_fields"] is True
    listener = resources("console.tf", "aws_lb_listener")["console"]
    assert listener["protocol"] == "HTTPS" and listener["port"] == 443
    ingress = resources("console.tf", "aws_vpc_security_group_ingress_rule")
    assert "var.console_allowed_cidrs" in json.dumps(ingress["console_lb_from_operators"])
    assert ingress["console_from_lb"]["referenced_security_group_id"] == "${aws_security_group.console_lb[0].id}"
    task = resources("console.tf", "aws_ecs_task_definition")["console"]["container_definitions"]
    assert "SLUICE_CONSOLE_KEYS_SECRET" in task and "--keys" not in task and "--secure-cookie" in task
    assert "SLUICE_STATE_MACHINE" in task
