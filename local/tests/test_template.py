"""template.yaml: the template checks pass (and would catch what they claim to catch), and the
facts the pipeline relies on hold: how the functions are built and triggered, how failures are
kept, least-privilege roles, the raw-zone bucket, alarms, and the environment the code reads.

The checks need the deploy environment (`make venv-deploy`: aws-sam-cli in ./.venv-deploy); the
structural tests only need cfn-lint's YAML loader (main ./.venv).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest
from cfnlint.decode import cfn_yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CHECK = ROOT / "local" / "template_check.sh"

FUNCTIONS = {"OrchestratorFunction": "orchestrator", "UpsertFunction": "upsert", "LoaderFunction": "loader"}
KINESIS_FUNCTIONS = ["OrchestratorFunction", "UpsertFunction"]

SNOWFLAKE_VARS = {
    "SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_SCHEMA",
    "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_ROLE", "SNOWFLAKE_PRIVATE_KEY_SECRET_ARN",
}
ROUTING_VARS = {"TABLE", "ROUTE_FIELD", "ROUTE_MAP", "ROUTE_DEFAULT_TABLE"}
REQUIRED_ENV = {
    "OrchestratorFunction": {
        "RUST_LOG", "RAW_BUCKET", "RAW_PREFIX", "ERROR_PREFIX", "FORMAT", "CSV_COLUMNS",
        "COMPRESSION", "COMPRESSION_LEVEL", "PARTITION_FIELD", "PARTITION_NAME", "PUT_CONCURRENCY",
    } | ROUTING_VARS,
    "UpsertFunction": {
        "RUST_LOG", "UPSERT_TABLES", "ERROR_BUCKET", "ERROR_PREFIX", "MAX_ROWS_PER_STATEMENT",
    } | SNOWFLAKE_VARS | ROUTING_VARS,
    "LoaderFunction": {
        "RUST_LOG", "RAW_BUCKET", "RAW_PREFIX", "SNOWFLAKE_STAGE", "RAW_TABLE_SUFFIX", "TABLE_MAP",
        "FILE_FORMAT_NDJSON", "FILE_FORMAT_CSV", "ON_ERROR",
    } | SNOWFLAKE_VARS,
}


@pytest.fixture(scope="module")
def t():
    return cfn_yaml.load(str(TEMPLATE))


def res(t, name):
    return t["Resources"][name]


def props(t, name):
    return t["Resources"][name]["Properties"]


def getatt_target(value) -> str:
    """`!GetAtt X.Arn` → X."""
    assert isinstance(value, dict) and "Fn::GetAtt" in value, value
    target = value["Fn::GetAtt"]
    return target[0] if isinstance(target, list) else target.split(".")[0]


def events(t, function, kind):
    return [e["Properties"] for e in props(t, function).get("Events", {}).values() if e["Type"] == kind]


def role_statements(t, function):
    role = getatt_target(props(t, function)["Role"])
    out = []
    for policy in props(t, role)["Policies"]:
        if "Fn::If" in policy:  # conditional policy: check the branch that is not AWS::NoValue
            policy = policy["Fn::If"][1]
        statements = policy["PolicyDocument"]["Statement"]
        out.extend(statements if isinstance(statements, list) else [statements])
    return out


def as_list(v):
    return v if isinstance(v, list) else [v]


def run_checks(template: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK), str(template)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )


# ------------------------------------------------------------------ the checks themselves

def test_template_checks_pass():
    r = run_checks(TEMPLATE)
    assert r.returncode == 0, f"template checks failed:\n{r.stdout}\n{r.stderr}"
    assert "template checks passed" in r.stdout


def test_checks_catch_a_misspelled_sam_property(tmp_path):
    """cfn-lint and `sam validate --lint` pass a misspelled event property; the local SAM
    transform (`sam validate --region`) must not."""
    text = TEMPLATE.read_text()
    assert "BisectBatchOnFunctionError:" in text
    bad = tmp_path / "template.yaml"
    bad.write_text(text.replace("BisectBatchOnFunctionError:", "BisectBatchOnFunctionErorr:", 1))
    r = run_checks(bad)
    assert r.returncode != 0, r.stdout
    assert "BisectBatchOnFunctionErorr" in r.stdout + r.stderr


def test_checks_catch_an_invalid_runtime(tmp_path):
    """Only cfn-lint on the transformed template checks the generated function's Runtime."""
    bad = tmp_path / "template.yaml"
    bad.write_text(TEMPLATE.read_text().replace("Runtime: provided.al2023", "Runtime: provided.al2099", 1))
    r = run_checks(bad)
    assert r.returncode != 0, r.stdout
    assert "provided.al2099" in r.stdout + r.stderr


# ------------------------------------------------------------------ functions and build

def test_header(t):
    assert str(t["AWSTemplateFormatVersion"]) == "2010-09-09"
    assert t["Transform"] == "AWS::Serverless-2016-10-31"


def test_three_rust_functions_for_arm64_built_with_cargo_lambda(t):
    functions = {k for k, v in t["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions == set(FUNCTIONS)
    for name, binary in FUNCTIONS.items():
        p = props(t, name)
        assert p["Runtime"] == "provided.al2023", name
        assert p["Architectures"] == ["arm64"], name
        assert p["Handler"] == "bootstrap", name
        assert p["CodeUri"] in ("./", "."), name  # the workspace root; Binary picks the package
        meta = res(t, name)["Metadata"]
        assert meta["BuildMethod"] == "rust-cargolambda", name
        assert meta["BuildProperties"]["Binary"] == binary, name
        # the binary is a workspace package's name (cargo lambda build --bin <binary>)
        manifest = (ROOT / "functions" / binary / "Cargo.toml").read_text()
        assert re.search(rf'^name\s*=\s*"{binary}"', manifest, re.M), binary


def test_every_function_has_its_own_role_and_log_group(t):
    roles = {getatt_target(props(t, f)["Role"]) for f in FUNCTIONS}
    assert len(roles) == 3
    for f in FUNCTIONS:
        assert "Policies" not in props(t, f), "own roles only: SAM policy templates would add more"
        log_group = props(t, f)["LoggingConfig"]["LogGroup"]["Ref"]
        assert res(t, log_group)["Type"] == "AWS::Logs::LogGroup"


# ------------------------------------------------------------------ event sources

def test_both_kinesis_functions_read_the_same_stream_with_safe_failure_handling(t):
    streams = set()
    for f in KINESIS_FUNCTIONS:
        (e,) = events(t, f, "Kinesis")
        streams.add(getatt_target(e["Stream"]))
        assert e["FunctionResponseTypes"] == ["ReportBatchItemFailures"], f
        assert e["BisectBatchOnFunctionError"] is True, f
        for key in ("BatchSize", "MaximumBatchingWindowInSeconds", "ParallelizationFactor",
                    "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "StartingPosition"):
            assert key in e, (f, key)
        on_failure = e["DestinationConfig"]["OnFailure"]
        assert on_failure["Type"] == "SQS"
        queue = getatt_target(on_failure["Destination"])
        assert res(t, queue)["Type"] == "AWS::SQS::Queue"
        # the event source mapping sends with the function's role
        assert any(
            "sqs:SendMessage" in as_list(s["Action"]) and getatt_target(s["Resource"]) == queue
            for s in role_statements(t, f)
        ), f
    (stream,) = streams
    assert res(t, stream)["Type"] == "AWS::Kinesis::Stream"


def _default(t, value):
    """A literal, or the default of the parameter a `!Ref` names."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return t["Parameters"][value["Ref"]]["Default"]
    return value


def test_record_age_is_below_the_stream_retention_in_every_mapping(t):
    """A record older than the stream's retention has expired: a mapping still retrying it then
    loses it without sending it to the on-failure queue. So every Kinesis mapping gives up (record
    age) before the retention, and -1 (no age limit) cannot be configured."""
    for f in KINESIS_FUNCTIONS:
        (e,) = events(t, f, "Kinesis")
        stream = props(t, getatt_target(e["Stream"]))
        retention_secs = int(_default(t, stream["RetentionPeriodHours"])) * 3600
        age = e["MaximumRecordAgeInSeconds"]
        assert 60 <= int(_default(t, age)) < retention_secs, (f, _default(t, age), retention_secs)
        if isinstance(age, dict):
            param = t["Parameters"][age["Ref"]]
            assert int(param["MinValue"]) >= 60, (f, "-1 would mean no age limit")
            assert int(param["Default"]) <= retention_secs - 3600, (f, "at least an hour of margin")


def test_stream_mode_and_encryption(t):
    p = props(t, "Stream")
    assert p["StreamModeDetails"]["StreamMode"] == {"Ref": "StreamMode"}
    assert set(t["Parameters"]["StreamMode"]["AllowedValues"]) == {"PROVISIONED", "ON_DEMAND"}
    assert p["ShardCount"] == {"Fn::If": ["IsProvisioned", {"Ref": "ShardCount"}, {"Ref": "AWS::NoValue"}]}
    assert p["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}


def test_loader_consumes_the_notification_queue_with_batch_item_failures(t):
    (e,) = events(t, "LoaderFunction", "SQS")
    assert getatt_target(e["Queue"]) == "NotificationQueue"
    assert e["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert not events(t, "LoaderFunction", "Kinesis")


def test_notification_queue_redrives_to_its_dlq_and_outlasts_the_loader(t):
    q = props(t, "NotificationQueue")
    assert getatt_target(q["RedrivePolicy"]["deadLetterTargetArn"]) == "NotificationDlq"
    assert q["RedrivePolicy"]["maxReceiveCount"] == 5
    assert res(t, "NotificationDlq")["Type"] == "AWS::SQS::Queue"
    assert q["VisibilityTimeout"] >= 6 * props(t, "LoaderFunction")["Timeout"]


def test_s3_may_send_only_from_the_raw_bucket(t):
    policy = props(t, "NotificationQueuePolicy")
    (s,) = policy["PolicyDocument"]["Statement"]
    assert s["Principal"] == {"Service": "s3.amazonaws.com"}
    assert s["Action"] == "sqs:SendMessage"
    assert s["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    source = s["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    bucket_name = props(t, "RawBucket")["BucketName"]["Fn::Sub"]
    assert source.endswith(":s3:::" + bucket_name)


# ------------------------------------------------------------------ raw-zone bucket

def test_bucket_is_private_encrypted_and_owner_enforced(t):
    b = props(t, "RawBucket")
    assert b["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    (rule,) = b["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    for branch in rule["Fn::If"][1:]:  # a customer-managed key, or S3-managed keys
        assert branch["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert b["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (deny,) = props(t, "RawBucketPolicy")["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_bucket_notifies_the_queue_for_loadable_files_under_the_raw_prefix(t):
    b = res(t, "RawBucket")
    assert "NotificationQueuePolicy" in as_list(b["DependsOn"])
    configs = b["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    suffixes = set()
    for c in configs:
        assert c["Event"] == "s3:ObjectCreated:*"
        assert getatt_target(c["Queue"]) == "NotificationQueue"
        rules = {r["Name"]: r["Value"] for r in c["Filter"]["S3Key"]["Rules"]}
        assert rules["prefix"] == {"Fn::Sub": "${RawPrefix}/"}
        suffixes.add(rules["suffix"])
    # every file the orchestrator writes: .ndjson/.csv, plain or .gz/.zst
    assert suffixes == {".gz", ".zst", ".ndjson", ".csv"}


def test_quarantine_prefix_expires(t):
    rules = props(t, "RawBucket")["LifecycleConfiguration"]["Rules"]
    (q,) = [r for r in rules if r.get("Prefix") == {"Fn::Sub": "${ErrorPrefix}/"}]
    assert q["Status"] == "Enabled"
    assert q["ExpirationInDays"] == {"Ref": "QuarantineRetentionDays"}


# ------------------------------------------------------------------ IAM

def test_function_roles_are_least_privilege(t):
    for f in FUNCTIONS:
        for s in role_statements(t, f):
            assert s["Effect"] == "Allow"
            for action in as_list(s["Action"]):
                assert "*" not in action, (f, action)
            for resource in as_list(s["Resource"]):
                # EC2's Describe calls have no resource-level permissions (VPC functions only)
                assert resource != "*" or all(a.startswith("ec2:Describe") for a in as_list(s["Action"])), (f, s)


def _actions(t, f):
    return {a for s in role_statements(t, f) for a in as_list(s["Action"])}


def _put_object_resources(t, f):
    return [r["Fn::Sub"] for s in role_statements(t, f) if "s3:PutObject" in as_list(s["Action"])
            for r in as_list(s["Resource"])]


def test_each_role_has_what_its_function_needs_and_no_more(t):
    orchestrator = _actions(t, "OrchestratorFunction")
    assert {"kinesis:GetRecords", "kinesis:GetShardIterator", "s3:PutObject", "sqs:SendMessage"} <= orchestrator
    assert not any(a.startswith("secretsmanager:") for a in orchestrator)
    assert sorted(_put_object_resources(t, "OrchestratorFunction")) == [
        "${RawBucket.Arn}/${ErrorPrefix}/orchestrator/*", "${RawBucket.Arn}/${RawPrefix}/*"]

    upsert = _actions(t, "UpsertFunction")
    assert {"kinesis:GetRecords", "secretsmanager:GetSecretValue", "s3:PutObject", "sqs:SendMessage"} <= upsert
    assert _put_object_resources(t, "UpsertFunction") == ["${RawBucket.Arn}/${ErrorPrefix}/upsert/*"]

    loader = _actions(t, "LoaderFunction")
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
            "secretsmanager:GetSecretValue"} <= loader
    # the loader reads objects' metadata (HeadObject: s3:GetObject) for reconciliation and, with s3:ListBucket,
    # gets 404 rather than 403 for a key that is not in the stage; it never writes
    assert {a for a in loader if a.startswith("s3:")} == {"s3:GetObject", "s3:ListBucket"}
    (listing,) = [s for s in role_statements(t, "LoaderFunction") if "s3:ListBucket" in as_list(s["Action"])]
    assert listing["Resource"] == {"Fn::GetAtt": ["RawBucket", "Arn"]}
    assert not any(a.startswith("kinesis:") for a in loader)

    for f in ("UpsertFunction", "LoaderFunction"):
        (secret,) = [s for s in role_statements(t, f) if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
        assert secret["Resource"] == {"Ref": "SnowflakePrivateKeySecretArn"}


def test_snowflake_storage_role_exists_only_with_snowflakes_user_and_external_id(t):
    """No placeholder trust: until SnowflakeIamUserArn and SnowflakeExternalId are given the role
    does not exist (so nothing in the account can assume it); then it trusts exactly that user
    with that external id. Its fixed name lets CREATE STORAGE INTEGRATION name it first."""
    role = res(t, "SnowflakeStorageRole")
    assert role["Condition"] == "HasSnowflakeTrust"
    assert t["Conditions"]["HasSnowflakeTrust"] == {"Fn::And": [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "SnowflakeIamUserArn"}, ""]}]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "SnowflakeExternalId"}, ""]}]},
    ]}
    p = role["Properties"]
    (trust,) = p["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Principal"] == {"AWS": {"Ref": "SnowflakeIamUserArn"}}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "SnowflakeExternalId"}}}
    assert ":root" not in str(p) and "0000" not in str(p)
    assert p["RoleName"] == {"Fn::Sub": "${AWS::StackName}-snowflake-storage"}
    assert t["Outputs"]["SnowflakeStorageRoleArn"]["Value"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-snowflake-storage"}
    statements = p["Policies"][0]["PolicyDocument"]["Statement"]
    read = [s for s in statements if "s3:GetObject" in as_list(s["Action"])]
    assert [s["Resource"]["Fn::Sub"] for s in read] == ["${RawBucket.Arn}/${RawPrefix}/*"]
    (listing,) = [s for s in statements if "s3:ListBucket" in as_list(s["Action"])]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [{"Fn::Sub": "${RawPrefix}/*"}]
    assert not any("s3:PutObject" in as_list(s["Action"]) for s in statements)


# ------------------------------------------------------------------ customer-managed KMS key

def _conditional_policy(t, role, name):
    """The statements of `role`'s policy `name`, which exists only under a condition."""
    for policy in props(t, role)["Policies"]:
        if "Fn::If" in policy and policy["Fn::If"][1]["PolicyName"] == name:
            assert policy["Fn::If"][2] == {"Ref": "AWS::NoValue"}
            return policy["Fn::If"][0], policy["Fn::If"][1]["PolicyDocument"]["Statement"]
    return None, []


KMS_CONDITION = {"StringEquals": {
    "kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"},
    "kms:EncryptionContext:aws:s3:arn": {"Fn::GetAtt": ["RawBucket", "Arn"]},
}}


def test_raw_zone_kms_key_encrypts_the_bucket_with_the_bucket_key(t):
    (rule,) = props(t, "RawBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    condition, kms, s3_managed = rule["Fn::If"]
    assert condition == "HasRawZoneKmsKey"
    assert kms == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "RawZoneKmsKeyArn"}},
                   "BucketKeyEnabled": True}
    assert s3_managed == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    # every function that puts objects is told the key; the loader only reads metadata
    for f in KINESIS_FUNCTIONS:
        assert props(t, f)["Environment"]["Variables"]["KMS_KEY_ID"] == {"Ref": "RawZoneKmsKeyArn"}, f
    assert "KMS_KEY_ID" not in props(t, "LoaderFunction")["Environment"]["Variables"]


def test_kms_grants_are_exactly_what_each_role_needs(t):
    """Writers: kms:GenerateDataKey (a single-part PUT); the storage integration: kms:Decrypt;
    the loader (HEAD only): nothing. Each only through S3 and for this bucket's bucket key."""
    expected = {"OrchestratorRole": ("encrypt-raw-zone", "kms:GenerateDataKey"),
                "UpsertRole": ("encrypt-raw-zone", "kms:GenerateDataKey"),
                "SnowflakeStorageRole": ("decrypt-raw-zone", "kms:Decrypt")}
    for role, (name, action) in expected.items():
        condition, statements = _conditional_policy(t, role, name)
        assert condition == "HasRawZoneKmsKey", role
        (s,) = statements
        assert (s["Effect"], s["Action"], s["Resource"]) == ("Allow", action, {"Ref": "RawZoneKmsKeyArn"}), role
        assert s["Condition"] == KMS_CONDITION, role
    for role in ("LoaderRole", "OrchestratorRole", "UpsertRole", "SnowflakeStorageRole"):
        kms = {a for p in props(t, role)["Policies"] for a in re.findall(r"kms:\w+", str(p))}
        allowed = {"LoaderRole": {"kms:Decrypt", "kms:ViaService"}, "UpsertRole": {"kms:GenerateDataKey", "kms:Decrypt", "kms:ViaService", "kms:EncryptionContext"},
                   "OrchestratorRole": {"kms:GenerateDataKey", "kms:ViaService", "kms:EncryptionContext"},
                   "SnowflakeStorageRole": {"kms:Decrypt", "kms:ViaService", "kms:EncryptionContext"}}[role]
        assert kms <= allowed, (role, kms)
    # the loader's and upsert's kms:Decrypt is the Snowflake key secret's, through Secrets Manager only
    for role in ("LoaderRole", "UpsertRole"):
        condition, (s,) = _conditional_policy(t, role, "decrypt-snowflake-key")
        assert condition == "HasSecretKmsKey" and s["Resource"] == {"Ref": "SnowflakePrivateKeyKmsKeyArn"}


# ------------------------------------------------------------------ private networking

def test_functions_join_the_vpc_only_when_subnets_are_given(t):
    for f in FUNCTIONS:
        assert props(t, f)["VpcConfig"] == {"Fn::If": [
            "InVpc",
            {"SubnetIds": {"Fn::Split": [",", {"Ref": "SubnetIds"}]},
             "SecurityGroupIds": {"Fn::Split": [",", {"Ref": "SecurityGroupIds"}]}},
            {"Ref": "AWS::NoValue"},
        ]}, f
        role = getatt_target(props(t, f)["Role"])
        condition, statements = _conditional_policy(t, role, "vpc-network-interfaces")
        assert condition == "InVpc", f
        actions = {a for s in statements for a in as_list(s["Action"])}
        assert actions == {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
                           "ec2:DescribeSubnets", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}, f
        for s in statements:  # "*" only where EC2 has no resource-level permissions
            if s["Resource"] == "*":
                assert all(a.startswith("ec2:Describe") for a in as_list(s["Action"])), s
    assert t["Conditions"]["InVpc"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SubnetIds"}, ""]}]}


def test_vpc_endpoints_for_what_the_functions_call(t):
    endpoints = {k: v for k, v in t["Resources"].items() if v["Type"] == "AWS::EC2::VPCEndpoint"}
    services = {k: (v["Condition"], v["Properties"]["VpcEndpointType"], v["Properties"]["ServiceName"]) for k, v in endpoints.items()}
    sub = lambda name: {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{name}"}  # noqa: E731
    assert services == {
        "S3GatewayEndpoint": ("HasVpcEndpoints", "Gateway", sub("s3")),
        "SecretsManagerEndpoint": ("HasVpcEndpoints", "Interface", sub("secretsmanager")),
        "KinesisEndpoint": ("HasVpcEndpoints", "Interface", sub("kinesis-streams")),
        "SqsEndpoint": ("HasAllVpcEndpoints", "Interface", sub("sqs")),
        "LogsEndpoint": ("HasAllVpcEndpoints", "Interface", sub("logs")),
        "SnowflakeEndpoint": ("HasSnowflakeEndpoint", "Interface", {"Ref": "SnowflakeVpceServiceName"}),
    }
    for name, e in endpoints.items():
        p = e["Properties"]
        if p["VpcEndpointType"] == "Interface":
            assert p["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}], name
            assert p["SubnetIds"] == {"Fn::Split": [",", {"Ref": "SubnetIds"}]}, name
            # Snowflake's names resolve through the operator's private hosted zone (README)
            assert p["PrivateDnsEnabled"] is (name != "SnowflakeEndpoint"), name
    assert props(t, "S3GatewayEndpoint")["RouteTableIds"] == {"Fn::Split": [",", {"Ref": "RouteTableIds"}]}
    (ingress,) = props(t, "EndpointSecurityGroup")["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"], ingress["CidrIp"]) == (443, 443, {"Ref": "VpcCidr"})


# ------------------------------------------------------------------ parameter shapes and rules

def _eval(t, expr, params):
    """Evaluates a Rules/Conditions expression for `params` (the intrinsics the template uses)."""
    if isinstance(expr, dict):
        (fn, arg), = expr.items()
        if fn == "Ref":
            return params.get(arg, t["Parameters"][arg].get("Default", ""))
        if fn == "Condition":
            return _eval(t, t["Conditions"][arg], params)
        if fn == "Fn::Equals":
            a, b = (_eval(t, x, params) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not _eval(t, arg[0], params)
        if fn == "Fn::And":
            return all(_eval(t, x, params) for x in arg)
        if fn == "Fn::Or":
            return any(_eval(t, x, params) for x in arg)
        raise AssertionError(f"unexpected {fn}")
    return expr


def refused(t, params):
    """The AllowedPattern and Rules messages `params` violate (what CloudFormation refuses)."""
    out = []
    for name, value in params.items():
        pattern = t["Parameters"][name].get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            out.append(f"{name}: pattern")
    for rule in t["Rules"].values():
        if "RuleCondition" in rule and not _eval(t, rule["RuleCondition"], params):
            continue
        out.extend(a["AssertDescription"] for a in rule["Assertions"] if not _eval(t, a["Assert"], params))
    return out


PUBLIC = {"SnowflakeAccount": "myorg-myaccount", "SnowflakeUser": "LOADER", "SnowflakeDatabase": "INGEST",
          "SnowflakeSchema": "RAW", "SnowflakeWarehouse": "INGEST_WH",
          "SnowflakePrivateKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sf-key-AbCdEf"}
SECOND_DEPLOY = {"SnowflakeIamUserArn": "arn:aws:iam::210987654321:user/abc1-s-v2st0000",
                 "SnowflakeExternalId": "MYACCOUNT_SFCRole=2_abcdefg="}
PRIVATE = {**PUBLIC, "SubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
           "SecurityGroupIds": "sg-0123456789abcdef0", "VpcEndpoints": "all", "VpcId": "vpc-0123456789abcdef0",
           "VpcCidr": "10.0.0.0/16", "RouteTableIds": "rtb-0123456789abcdef0",
           "SnowflakeUrl": "https://myorg-myaccount.privatelink.snowflakecomputing.com",
           "SnowflakeVpceServiceName": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"}
KMS = {**PUBLIC, **SECOND_DEPLOY,
       "RawZoneKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
SHAPES = {"public": PUBLIC, "public-second-deploy": {**PUBLIC, **SECOND_DEPLOY}, "private": PRIVATE,
          "private-kms": {**PRIVATE, **KMS}, "kms": KMS}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_accepted_and_creates_what_it_says(t, shape):
    params = SHAPES[shape]
    assert refused(t, params) == []
    cond = {c: _eval(t, {"Condition": c}, params) for c in t["Conditions"]}
    assert cond["InVpc"] == ("SubnetIds" in params)
    assert cond["HasAllVpcEndpoints"] == cond["HasSnowflakeEndpoint"] == (params.get("VpcEndpoints") == "all")
    assert cond["HasRawZoneKmsKey"] == ("RawZoneKmsKeyArn" in params)
    assert cond["HasSnowflakeTrust"] == ("SnowflakeIamUserArn" in params)


@pytest.mark.parametrize("bad, message", [
    ({"ErrorPrefix": "raw/errors"}, "ErrorPrefix: pattern"),
    ({"RawPrefix": "data/raw", "ErrorPrefix": "data"}, "RawPrefix: pattern"),
    ({"ErrorPrefix": "raw"}, "ErrorPrefix must differ from RawPrefix"),
    ({"SubnetIds": "subnet-0123456789abcdef0"}, "Set both SubnetIds and SecurityGroupIds"),
    ({"VpcEndpoints": "required"}, "VpcEndpoints needs VpcId."),
    ({"SnowflakeVpceServiceName": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"}, "SnowflakeVpceServiceName needs"),
    ({"SnowflakeIamUserArn": SECOND_DEPLOY["SnowflakeIamUserArn"]}, "Set both SnowflakeIamUserArn and SnowflakeExternalId"),
    ({"RawZoneKmsKeyArn": "alias/raw-zone"}, "RawZoneKmsKeyArn: pattern"),
])
def test_rules_refuse_overlapping_prefixes_and_half_configured_shapes(t, bad, message):
    problems = refused(t, {**PUBLIC, **bad})
    assert any(p.startswith(message) for p in problems), problems


def _with_defaults(template_text: str, params: dict) -> str:
    """The template with `params` as its parameters' defaults: cfn-lint and the SAM transform
    then check the resources and conditions of that shape."""
    doc = cfn_yaml.loads(template_text)
    for name, value in params.items():
        doc["Parameters"][name]["Default"] = value
    return __import__("json").dumps(doc)


@pytest.mark.parametrize("shape", ["private", "kms", "private-kms"])
def test_template_checks_pass_for_each_shape(tmp_path, shape):
    """cfn-lint, sam validate and cfn-lint on the transformed template, with the shape's values."""
    shaped = tmp_path / "template.json"
    shaped.write_text(_with_defaults(TEMPLATE.read_text(), SHAPES[shape]))
    r = run_checks(shaped)
    assert r.returncode == 0, f"{shape}:\n{r.stdout}\n{r.stderr}"
    assert "template checks passed" in r.stdout


# ------------------------------------------------------------------ configuration

def test_parameters(t):
    params = t["Parameters"]
    for name in ("StreamMode", "ShardCount", "SnowflakeAccount", "SnowflakeUser", "SnowflakeDatabase",
                 "SnowflakeSchema", "SnowflakeWarehouse", "SnowflakeRole", "SnowflakePrivateKeySecretArn",
                 "SnowflakeStage", "SnowflakeExternalId", "SnowflakeIamUserArn", "RawPrefix", "ErrorPrefix",
                 "Table", "RouteField", "RouteMap", "UpsertTables", "ParallelizationFactor",
                 "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "AlarmEmail", "LogLevel"):
        assert name in params, name
    assert params["SnowflakeStage"]["Default"] == "RAW_STAGE"
    assert params["RawPrefix"]["Default"] == "raw"
    assert params["ErrorPrefix"]["Default"] == "errors"


def test_functions_get_the_environment_the_code_reads(t):
    for f, required in REQUIRED_ENV.items():
        env = props(t, f)["Environment"]["Variables"]
        missing = required - set(env)
        assert not missing, (f, sorted(missing))
    assert not SNOWFLAKE_VARS & set(props(t, "OrchestratorFunction")["Environment"]["Variables"])


def test_every_environment_variable_is_read_by_the_code(t):
    """A variable the template sets but no code reads is a typo or a stale name."""
    sources = "\n".join(
        p.read_text() for d in ("shared/src", "functions")
        for p in (ROOT / d).rglob("*.rs")
    )
    unread = sorted(
        {name for f in FUNCTIONS for name in props(t, f)["Environment"]["Variables"]
         if name != "RUST_LOG" and f'"{name}"' not in sources}
    )
    assert not unread, f"set in template.yaml but not read by shared/ or functions/: {unread}"


def test_kinesis_functions_quarantine_under_distinct_keys(t):
    """Both Kinesis functions get the same ERROR_PREFIX; the code writes below the function's
    own name (shared/src/rawzone/layout.rs, `Writer`), and each role may write only there, so one
    function can never overwrite the other's quarantine object for the same batch."""
    prefixes = {props(t, f)["Environment"]["Variables"]["ERROR_PREFIX"]["Ref"] for f in KINESIS_FUNCTIONS}
    assert prefixes == {"ErrorPrefix"}
    quarantine = {
        f: [r for r in _put_object_resources(t, f) if r.startswith("${RawBucket.Arn}/${ErrorPrefix}/")]
        for f in KINESIS_FUNCTIONS
    }
    assert quarantine == {
        "OrchestratorFunction": ["${RawBucket.Arn}/${ErrorPrefix}/orchestrator/*"],
        "UpsertFunction": ["${RawBucket.Arn}/${ErrorPrefix}/upsert/*"],
    }
    layout = (ROOT / "shared/src/rawzone/layout.rs").read_text()
    for segment in ("orchestrator", "upsert"):
        assert f'=> "{segment}"' in layout, segment


def test_upsert_tables_default_is_valid_json_for_the_default_table(t):
    import json

    params = t["Parameters"]
    mapping = json.loads(params["UpsertTables"]["Default"])
    assert params["Table"]["Default"] in mapping


# ------------------------------------------------------------------ alarms and outputs

def _alarms(t):
    return [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"]


def _dimension(alarm, name):
    return next(d["Value"] for d in alarm["Dimensions"] if d["Name"] == name)


def test_alarms_on_iterator_age_dlq_depth_and_errors(t):
    alarms = _alarms(t)
    for a in alarms:
        assert a["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    iterator_age = {_dimension(a, "FunctionName")["Ref"] for a in alarms if a.get("MetricName") == "IteratorAge"}
    assert iterator_age == set(KINESIS_FUNCTIONS)
    errors = {_dimension(a, "FunctionName")["Ref"] for a in alarms if a.get("MetricName") == "Errors"}
    assert errors == set(FUNCTIONS)
    depth = {getatt_target(_dimension(a, "QueueName")) for a in alarms
             if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"}
    assert depth == {"NotificationDlq", "KinesisFailureQueue"}
    assert res(t, "AlarmEmailSubscription")["Condition"] == "HasAlarmEmail"


def test_alarms_and_dashboard_on_the_functions_own_metrics(t):
    """Every custom metric an alarm reads is in the namespace the functions write to
    (METRICS_NAMESPACE) and names a function that emits it."""
    emitted = {"Quarantined": {"orchestrator", "upsert"}, "ReconciliationMismatches": {"orchestrator", "upsert", "loader"},
               "FilesFailed": {"loader"}, "LagMs": {"orchestrator", "upsert"}, "RowsRefused": {"upsert"},
               "SchemaDriftQuarantined": {"upsert"}}
    seen: dict[str, set] = {}
    for alarm in _alarms(t):
        stats = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
        if alarm.get("Namespace") == {"Ref": "MetricsNamespace"}:
            stats.append(alarm)
        for m in stats:
            if m["Namespace"] != {"Ref": "MetricsNamespace"}:
                continue
            [dim] = m["Dimensions"]
            assert dim["Name"] == "Function"
            seen.setdefault(m["MetricName"], set()).add(dim["Value"])
    assert seen == emitted
    for fn in FUNCTIONS:
        env = res(t, fn)["Properties"]["Environment"]["Variables"]
        assert env["METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    assert res(t, "Dashboard")["Type"] == "AWS::CloudWatch::Dashboard"


def test_schema_drift_alarms_on_the_first_quarantined_record(t):
    """Schema evolution quarantines a value its column cannot hold: one record is worth a look."""
    alarm = props(t, "SchemaDriftAlarm")
    assert alarm["MetricName"] == "SchemaDriftQuarantined"
    assert alarm["Dimensions"] == [{"Name": "Function", "Value": "upsert"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == ("Sum", 0, "GreaterThanThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_outputs(t):
    outputs = t["Outputs"]
    for name in ("RawBucketName", "StreamName", "StreamArn", "NotificationQueueUrl", "NotificationDlqUrl",
                 "KinesisFailureQueueUrl", "SnowflakeStorageRoleArn", "StageUrl", "OrchestratorFunctionName",
                 "UpsertFunctionName", "LoaderFunctionName"):
        assert name in outputs, name
    assert outputs["SnowflakeStorageRoleArn"]["Value"]["Fn::Sub"].endswith(":role/${AWS::StackName}-snowflake-storage")
