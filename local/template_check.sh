#!/usr/bin/env bash
# Template checks for template.yaml, all offline and without AWS credentials:
#   1. cfn-lint                      CloudFormation schemas; SAM resources only shallowly
#   2. sam validate --lint           the same cfn-lint rules as SAM CLI runs them
#   3. sam validate --region ...     runs the SAM transform locally: catches misspelled SAM
#                                    properties (e.g. BisectBatchOnFunctionErorr), which 1 and 2 pass
#   4. cfn-lint on the transformed template: checks the generated Lambda functions and event
#      source mappings against the CloudFormation schemas (e.g. an unknown Runtime)
# Usage: local/template_check.sh [template]   (SAM, CFN_LINT, DEPLOY_PYTHON override the tools)
set -euo pipefail
cd "$(dirname "$0")/.."

template=${1:-template.yaml}
SAM=${SAM:-.venv-deploy/bin/sam}
DEPLOY_PYTHON=${DEPLOY_PYTHON:-.venv-deploy/bin/python}
CFN_LINT=${CFN_LINT:-.venv/bin/cfn-lint}
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1

for tool in "$SAM" "$DEPLOY_PYTHON" "$CFN_LINT"; do
  if [[ ! -x $tool ]]; then
    echo "template_check: $tool not found (run: make venv venv-deploy)" >&2
    exit 2
  fi
done

echo "== cfn-lint $template"
"$CFN_LINT" "$template"
# --config-env names an environment samconfig.toml does not have, so settings a deployer saves
# there (e.g. validate lint = true, which skips the transform) cannot change these checks.
echo "== sam validate --lint"
"$SAM" validate --lint --template-file "$template" --region us-east-1 --config-env template-check
echo "== sam validate (local SAM transform)"
"$SAM" validate --template-file "$template" --region us-east-1 --config-env template-check

echo "== cfn-lint on the transformed template"
transformed=$(mktemp --suffix=.json)
trap 'rm -f "$transformed"' EXIT
"$DEPLOY_PYTHON" - "$template" >"$transformed" <<'PY'
import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """Managed policy names would need IAM; this template gives every function its own role."""

    def load(self):
        return {}


with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
for resource in template.get("Resources", {}).values():
    if resource.get("Type") == "AWS::Serverless::Function":
        # what `sam validate` does too: code locations are only known after `sam package`
        resource["Properties"]["CodeUri"] = "s3://bucket/key"
print(json.dumps(transform(template, {}, NoManagedPolicies()), indent=1))
PY
"$CFN_LINT" "$transformed"
echo "template checks passed"
