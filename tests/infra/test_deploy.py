"""The deployment files: the CloudFormation seed (cfn-lint, checkov), the build spec (it
uses what the seed gives it and the variables Terraform declares), the Dockerfile
(checkov; built when a Docker daemon is there) and the architecture drawing (renders
from its source)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO

INFRA = Path(os.environ.get("INFRA_VENV", Path.home() / ".cache" / "sluice" / "infra-venv"))


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, …) as plain values."""


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node))


def seed():
    return yaml.load((REPO / "cfn" / "seed.yaml").read_text(), Loader=CfnLoader)


def checkov(path: Path, framework: str):
    done = subprocess.run(
        [str(INFRA / "bin" / "checkov"), "-f", str(path), "--framework", framework, "--skip-download", "--quiet", "--compact"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Failed checks: 0\b", done.stdout), done.stdout


def test_the_seed_passes_cfn_lint_and_checkov():
    done = subprocess.run([str(INFRA / "bin" / "cfn-lint"), str(REPO / "cfn" / "seed.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    checkov(REPO / "cfn" / "seed.yaml", "cloudformation")


def test_the_seed_creates_a_privileged_encrypted_codebuild_project():
    resources = seed()["Resources"]
    project = resources["Project"]["Properties"]
    assert project["Environment"]["PrivilegedMode"] is True
    assert project["Source"]["BuildSpec"] == "buildspec.yml"
    assert project["Source"]["Location"] == "SourceLocation"
    assert project["EncryptionKey"] and project["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"
    bucket = resources["ArtifactBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert set(seed()["Outputs"]) >= {"ProjectName", "ProjectArn", "RoleArn"}


def test_the_buildspec_uses_what_the_seed_and_terraform_provide():
    spec = yaml.safe_load((REPO / "buildspec.yml").read_text())
    assert spec["version"] == 0.2
    phases = spec["phases"]
    assert all(p.get("on-failure") == "ABORT" for p in phases.values()), "every phase fails fast"
    commands = "\n".join(c for p in phases.values() for c in p["commands"])
    for step in ["scripts/test", "docker push", "terraform -chdir=terraform init", "-backend-config=", "terraform -chdir=terraform apply", "sluice jobs push jobs"]:
        assert step in commands, step
    # Every variable the build reads is set by the seed, by the spec, by CodeBuild or by
    # the build itself.
    from_seed = {v["Name"] for v in seed()["Resources"]["Project"]["Properties"]["Environment"]["EnvironmentVariables"]}
    own = set(spec["env"]["variables"]) | {"AWS_REGION", "CODEBUILD_RESOLVED_SOURCE_VERSION", "HOME", "PATH"}
    exported = set(re.findall(r"export (\w+)=", commands)) | set(re.findall(r"\s(TF_VAR_\w+)=", commands))
    used = set(re.findall(r"\$\{?(\w+)\}?", commands))
    assert used <= from_seed | own | exported, sorted(used - from_seed - own - exported)
    # Every TF_VAR_ names a declared variable.
    declared = set(re.findall(r'variable "(\w+)"', (REPO / "terraform" / "variables.tf").read_text()))
    tf_vars = {v.removeprefix("TF_VAR_") for v in exported if v.startswith("TF_VAR_")}
    assert tf_vars and tf_vars <= declared, sorted(tf_vars - declared)


def test_the_dockerfile_is_a_small_non_root_multi_stage_build():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2 and "distroless" in stages[1], stages
    assert re.search(r"^USER nonroot", text, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/sluice"]' in text
    # What it copies exists, and the placeholder test target is where the manifest says.
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), path
    manifest = (REPO / "engine" / "Cargo.toml").read_text()
    test_path = re.search(r'path = "\.\./(tests/e2e/main\.rs)"', manifest).group(1)
    assert test_path in text
    checkov(REPO / "Dockerfile", "dockerfile")


@pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="no Docker daemon here (the file is checked by checkov above)",
)
def test_the_image_builds():
    done = subprocess.run(["docker", "build", "-t", "sluice:test", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_the_drawing_renders_from_its_source(tmp_path):
    done = subprocess.run([str(REPO / "scripts" / "drawing"), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    svg = (tmp_path / "architecture.svg").read_text()
    assert (tmp_path / "architecture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for part in ["Source databases", "VPN", "private subnets", "ECS Fargate task", "Step Functions", "EventBridge", "SQS queue", "letter queue",
                 "DynamoDB", "S3 lake", "Glue", "Athena", "CloudWatch", "SNS", "Secrets Manager", "CodeBuild", "ECR",
                 "NAT gateway", "REST API", "SFTP server", "Load Balancer", "sluice serve", "Flight SQL"]:
        assert part in svg, part
    # The committed rendering (embedded in the README) shows the same components.
    committed = (REPO / "docs" / "architecture.svg").read_text()
    assert sorted(re.findall(r"<title>(\w+)</title>", committed)) == sorted(re.findall(r"<title>(\w+)</title>", svg))
    assert "docs/architecture.svg" in (REPO / "README.md").read_text()
