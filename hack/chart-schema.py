#!/usr/bin/env python3
"""Write charts/quayctl-controller/values.schema.json: every value the controller refuses with exit 2
is refused by `helm install`. The patterns are built here from the grammars of src/grammar.rs,
src/taints.rs and src/reference.rs, once each; `make lint` checks that the committed schema is what
this writes, and tests/e2e.rs that the chart and the controller refuse the same values.

    hack/chart-schema.py           write the schema
    hack/chart-schema.py --check   exit 1 if the committed one differs
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "charts/quayctl-controller/values.schema.json"

# The Kubernetes grammars (src/grammar.rs).
DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(?:\.{DNS_LABEL})*"
LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = rf"(?:{DNS_SUBDOMAIN}/)?{LABEL_NAME}"
LABEL_VALUE = rf"(?:{LABEL_NAME})?"
QUANTITY = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?"
# Taints and tolerations (src/taints.rs): `key=value:Effect`, `key:Effect`, `key`, `key=value`, `*`.
EFFECT = r"(?:NoSchedule|PreferNoSchedule|NoExecute)"
TAINT = rf"{LABEL_KEY}(?:={LABEL_VALUE})?(?::{EFFECT})?"
TOLERATION = rf"(?:\*|{TAINT})"
# Label selectors (grammar.rs validate_label_selector).
REQUIREMENT = (
    rf"(?:!\s*{LABEL_KEY}"
    rf"|{LABEL_KEY}\s*(?:==|!=|=)\s*{LABEL_VALUE}"
    rf"|{LABEL_KEY}\s+(?:in|notin)\s+\(\s*{LABEL_VALUE}(?:\s*,\s*{LABEL_VALUE})*\s*\)"
    rf"|{LABEL_KEY})"
)
# Image references: distribution's reference grammar (src/reference.rs).
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = rf"{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*(?::[0-9]+)?"
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REFERENCE = (
    rf"(?:{DOMAIN}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
MAX_IMAGES = 64  # config.rs MAX_IMAGES
MAX_TOLERATIONS = 32  # config.rs MAX_TOLERATIONS


def whole(body):
    return f"^{body}$"


def listed(item, sep):
    """`item`, then more after `sep`, with whitespace around; an optional trailing sep only for `;`
    (as QUAY_IMAGES allows one)."""
    tail = rf"\s*{sep}?" if sep == ";" else ""
    return whole(rf"\s*{item}(?:\s*{sep}\s*{item})*{tail}\s*")


def at_most(sep, most):
    """At most `most` entries between `sep`s (a trailing `;` is not an entry). RE2, which Helm's
    schema validator uses, refuses a bounded repeat of the whole item grammar, so the count is a
    pattern of its own."""
    tail = rf"{sep}?" if sep == ";" else ""
    return whole(rf"[^{sep}]*(?:{sep}[^{sep}]*){{0,{most - 1}}}{tail}")


def counted(variable, item, sep, most, **extra):
    """A list of `item`s, at most `most` of them."""
    return {"allOf": [{"pattern": listed(item, sep)}, {"pattern": at_most(sep, most)}], **extra, "description": variable}


def nullable(kind, **extra):
    return {"type": [kind, "null"], **extra}


def integer(variable, low, high):
    return nullable("integer", minimum=low, maximum=high, description=variable)


def choice(variable, *names):
    return {"enum": [*names, None], "description": variable}


def pattern(variable, regex, **extra):
    return nullable("string", pattern=regex, description=variable, **extra)


CONFIG = {
    "quayImages": counted(
        f"QUAY_IMAGES (required unless imagesFrom is set): `;`-separated image references, at most {MAX_IMAGES}.",
        REFERENCE,
        ";",
        MAX_IMAGES,
        type=["string", "null"],
    ),
    "deadlineSeconds": integer("DEADLINE_SECONDS", 1, 86400),
    "waitGraceSeconds": integer("WAIT_GRACE_SECONDS", 0, 3600),
    "pullErrorGraceSeconds": integer("PULL_ERROR_GRACE_SECONDS", 0, 3600),
    "pullStrategy": choice("PULL_STRATEGY", "kubelet", "volume", "quayctl"),
    "quayctlImage": pattern("QUAYCTL_IMAGE", whole(REFERENCE)),
    "helperImage": pattern("HELPER_IMAGE", whole(REFERENCE)),
    "helperArchitectures": pattern("HELPER_ARCHITECTURES", listed(DNS_LABEL, ",")),
    "runnerImage": pattern("RUNNER_IMAGE", whole(REFERENCE)),
    "pullPolicy": choice("PULL_POLICY", "auto", "Always", "IfNotPresent"),
    "tolerations": counted("TOLERATIONS", TOLERATION, ",", MAX_TOLERATIONS, type=["string", "null"]),
    "imagePullSecrets": pattern("IMAGE_PULL_SECRETS", listed(DNS_SUBDOMAIN, ",")),
    "priorityClassName": pattern("PRIORITY_CLASS_NAME", whole(DNS_SUBDOMAIN), maxLength=253),
    "pullerCpuRequest": pattern("PULLER_CPU_REQUEST", whole(QUANTITY)),
    "pullerMemoryRequest": pattern("PULLER_MEMORY_REQUEST", whole(QUANTITY)),
    "pullerCpuLimit": pattern("PULLER_CPU_LIMIT", whole(QUANTITY)),
    "pullerMemoryLimit": pattern("PULLER_MEMORY_LIMIT", whole(QUANTITY)),
    "maxParallel": integer("MAX_PARALLEL", 0, 100000),
    "seedNodes": integer("SEED_NODES", 0, 10000),
    "skipPresent": nullable("boolean", description="SKIP_PRESENT"),
    "ttlSecondsAfterFinished": integer("TTL_SECONDS_AFTER_FINISHED", 0, 2147483647),
    "runId": pattern("RUN_ID", whole(LABEL_NAME)),
    "instance": pattern("INSTANCE", whole(LABEL_NAME)),
    "dryRun": nullable("boolean", description="DRY_RUN"),
    "reportFormat": choice("REPORT_FORMAT", "text", "json"),
    "logFormat": choice("LOG_FORMAT", "text", "json"),
    "nodeSelector": pattern("NODE_SELECTOR", listed(REQUIREMENT, ",")),
    "createConcurrency": integer("CREATE_CONCURRENCY", 1, 256),
    "namespace": pattern("NAMESPACE", whole(DNS_LABEL)),
    "startupTaint": pattern("STARTUP_TAINT", whole(rf"\s*{TAINT}\s*")),
    "startupTaintMaxHoldSeconds": integer("STARTUP_TAINT_MAX_HOLD_SECONDS", 0, 86400),
    "keepLastPuller": nullable("boolean", description="KEEP_LAST_PULLER"),
    "pullerKind": choice("PULLER_KIND", "job", "pod"),
    "rustLog": nullable("string", description="RUST_LOG"),
}

# IMAGES_FROM is on: imagesFrom names namespaces or a namespace selector.
IMAGES_FROM_ON = {
    "properties": {
        "imagesFrom": {
            "anyOf": [
                {"properties": {"namespaces": {"minItems": 1}}, "required": ["namespaces"]},
                {"properties": {"namespaceSelector": {"minLength": 1}}, "required": ["namespaceSelector"]},
            ]
        }
    },
    "required": ["imagesFrom"],
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "quayctl-controller chart values",
    "type": "object",
    "additionalProperties": False,
    "required": ["config", "image", "schedule"],
    # QUAY_IMAGES is required unless IMAGES_FROM says where the images come from (config.rs).
    "if": IMAGES_FROM_ON,
    "else": {"properties": {"config": {"required": ["quayImages"], "properties": {"quayImages": {"type": "string"}}}}},
    "properties": {
        # Every object is named after it; the joining CronJob adds `-joining` (8) to a name that must
        # stay within a CronJob's 52 characters.
        "name": {"type": "string", "pattern": whole(r"[a-z0-9](?:[-a-z0-9]{0,42}[a-z0-9])?")},
        "image": {
            "type": "object",
            "additionalProperties": False,
            "required": ["repository"],
            "properties": {
                "repository": {"type": "string", "minLength": 1},
                "tag": {"type": "string"},
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            },
        },
        "namespace": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "create": {"type": "boolean"},
                "podSecurity": {"enum": ["privileged", "baseline", "restricted"]},
                "name": {"type": "string", "pattern": whole(rf"(?:{DNS_LABEL})?")},
            },
            # Creating the release namespace itself would fail the install: it must exist already.
            "if": {"properties": {"create": {"const": True}}, "required": ["create"]},
            "then": {"properties": {"name": {"minLength": 1}}, "required": ["name"]},
        },
        "schedule": {"type": "string", "minLength": 1},
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
        "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0},
        "failedJobsHistoryLimit": {"type": "integer", "minimum": 0},
        "joining": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "schedule": {"type": "string", "minLength": 1},
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                "watchSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
                "startingDeadlineSeconds": {"type": "integer", "minimum": 0},
                "pullerKind": {"enum": ["job", "pod"]},
            },
        },
        "admissionPolicy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"enabled": {"type": "boolean"}},
        },
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        # IMAGES_FROM, as workloads.rs parses it: namespaces (names or "*") or a namespace selector,
        # not both; a workload selector; kinds by their plural names.
        "imagesFrom": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "namespaces": {
                    "type": "array",
                    "items": {"type": "string", "pattern": whole(rf"(?:\*|{DNS_LABEL})")},
                    "uniqueItems": True,
                },
                "namespaceSelector": {"type": "string", "pattern": whole(rf"(?:{listed(REQUIREMENT, ',')[1:-1]})?")},
                "selector": {"type": "string", "pattern": whole(rf"(?:{listed(REQUIREMENT, ',')[1:-1]})?")},
                "kinds": {
                    "type": "array",
                    "items": {"enum": ["deployments", "statefulsets", "daemonsets", "cronjobs", "jobs"]},
                    "uniqueItems": True,
                },
            },
            "not": {
                "properties": {"namespaces": {"minItems": 1}, "namespaceSelector": {"minLength": 1}},
                "required": ["namespaces", "namespaceSelector"],
            },
        },
        "resources": {"type": "object"},
        "config": {
            "type": "object",
            "additionalProperties": False,
            "properties": CONFIG,
            # The quayctl strategy needs its image (config.rs: QUAYCTL_IMAGE is required with it).
            "if": {"properties": {"pullStrategy": {"const": "quayctl"}}, "required": ["pullStrategy"]},
            "then": {"properties": {"quayctlImage": {"type": "string"}}, "required": ["quayctlImage"]},
        },
    },
}


def main():
    text = json.dumps(SCHEMA, indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            print(f"{OUT} is not what hack/chart-schema.py writes: run it", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
