"""The cluster files as their tools read them: cluster.yaml through Ray's own launcher validation,
deploy/rayjob.yaml as KubeRay would see it, and every job command the README and docs/ show through
the job's own flag parser."""

from __future__ import annotations

import copy
import json
import re
import shlex

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from hdr_dist.jobs import compare, forms, report, score, tune
from tests.helpers import ROOT

PARSERS = {
    "compare": compare.parser,
    "score": score.parser,
    "tune": tune.parser,
    "report": report.parser,
    "forms": forms.parser,
}


def launcher_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validation():
    config = launcher_config()
    full = prepare_config(copy.deepcopy(config))  # what `ray up` does first: defaults in, then the schema
    validate_config(full)
    types = full["available_node_types"]
    assert full["provider"]["type"] == "aws"
    assert full["head_node_type"] == "head"
    workers = {name: t for name, t in types.items() if name != "head"}
    assert set(workers) == {"cpu-worker", "gpu-worker"}
    for t in workers.values():  # both autoscale, from zero
        assert t["min_workers"] == 0 < t["max_workers"] <= full["max_workers"]
    assert types["gpu-worker"]["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS's GPU families
    assert not types["head"]["node_config"]["InstanceType"].startswith(("g", "p"))
    # The checkout goes to every node and is installed there, with the token the cluster shares.
    assert config["file_mounts"]["~/hdr-dist"] == "."
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any("pip install" in c and "-e ~/hdr-dist" in c for c in config["setup_commands"])
    # Workers decode untrusted images: a role of their own, not the launcher's EC2-and-S3 head profile.
    for t in workers.values():
        assert t["node_config"]["IamInstanceProfile"] == {"Name": "hdr-dist-worker"}
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])


def test_the_worker_role_reaches_one_bucket_and_nothing_else():
    policy = json.loads((ROOT / "deploy" / "aws" / "worker-policy.json").read_text())
    trust = json.loads((ROOT / "deploy" / "aws" / "worker-trust.json").read_text())
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow"
        assert all(a.startswith("s3:") and "*" not in a for a in actions)
        assert statement["Resource"] in ("arn:aws:s3:::BUCKET", "arn:aws:s3:::BUCKET/*")
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= {
        a for st in policy["Statement"] for a in st["Action"]
    }
    passing = json.loads((ROOT / "deploy" / "aws" / "head-pass-worker-role.json").read_text())["Statement"]
    assert passing == [
        {
            "Sid": "LaunchWorkersWithTheirOwnRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "arn:aws:iam::ACCOUNT:role/hdr-dist-worker",
        }
    ]
    readme = (ROOT / "docs" / "cluster.md").read_text()
    for needed in (
        "file://deploy/aws/worker-trust.json",
        "deploy/aws/worker-policy.json",
        "--instance-profile-name hdr-dist-worker",
        "deploy/aws/head-pass-worker-role.json",
    ):
        assert needed in readme, needed


def test_a_broken_cluster_yaml_fails_that_validation():
    config = launcher_config()
    config["available_node_types"]["cpu-worker"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        validate_config(prepare_config(config))
    config = launcher_config()
    config["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(config))


def test_rayjob_runs_compare_from_the_image_deploy_builds():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__  # the Ray pyproject.toml pins
    assert spec["rayClusterSpec"]["authOptions"]["mode"] == "token"
    # The dashboard's job API stays off the pod network: bound to the head pod's localhost, and the
    # job submitted from a sidecar in that pod.
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert spec["submissionMode"] == "SidecarMode"
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head["template"]["spec"]["restartPolicy"] == "Never"

    # The entrypoint: this repository's jobs/compare.py, where deploy/Dockerfile puts the checkout,
    # with flags compare accepts.
    python, script, *entry_flags = shlex.split(spec["entrypoint"])
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    home = re.search(r"^COPY .* \. (\S+)$", dockerfile, re.M).group(1)
    assert python == "python"
    assert script == f"{home}/jobs/compare.py"
    assert (ROOT / "jobs" / "compare.py").is_file()
    args = compare.parser("compare").parse_args(entry_flags)
    assert args.workers > 1
    assert args.placement_timeout

    # Every pod runs that image and mounts the shared volume where the flags write.
    groups = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"].endswith("/hdr-dist:0.1")
        volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert set(mounts.values()) <= claims
        for path in (args.output, args.storage_path):
            assert any(path.startswith(m + "/") for m in mounts), (path, mounts)
    assert any(
        g.get("maxReplicas", 0) > g.get("minReplicas", 0) for g in spec["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert next(d for d in docs if d["kind"] == "PersistentVolumeClaim")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]


def readme_job_commands() -> list[tuple[str, list[str]]]:
    """Each `python jobs/NAME.py ...` or `hdr NAME ...` command in the shell blocks of the README and
    docs/."""
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            m = re.search(r"(?:python jobs/(\w+)\.py|\bhdr (\w+))(.*)", line)
            if m and (m.group(1) or m.group(2)) in PARSERS:
                commands.append((m.group(1) or m.group(2), shlex.split(m.group(3))))
    return commands


def test_every_job_command_in_the_readme_parses(tmp_path, monkeypatch):
    commands = readme_job_commands()
    monkeypatch.chdir(tmp_path)  # where the --config files the commands name are made, as a sweep would
    for _, argv in commands:
        for path in (argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text("{}")
    assert {name for name, _ in commands} == set(PARSERS)
    cluster_section = (ROOT / "docs" / "cluster.md").read_text()
    for needed in (
        "ray up cluster.yaml",
        "ray down cluster.yaml",
        "RAY_AUTH_MODE=token",
        "--storage-path s3://",
        "kubectl apply -f deploy/rayjob.yaml",
    ):
        assert needed in cluster_section, needed
    for name, argv in commands:
        if {"-h", "--help"} & set(argv):
            continue
        try:
            PARSERS[name](name).parse_args(argv)
        except SystemExit:
            pytest.fail(f"README or docs/: `{name} {' '.join(argv)}` does not parse")
