#!/bin/sh
# One-shot MinIO setup (the compose service `minio-init`, image minio/mc), run on every
# `up`; each step is idempotent:
#   1. the bucket the platform stores uploads and artifacts in;
#   2. a policy that allows only that bucket's object operations;
#   3. the platform's own user (S3_APP_ACCESS_KEY / S3_APP_SECRET_KEY) with that policy.
# The root account stays with this job and the MinIO console: the app never holds it,
# so a leaked app key cannot create users, change policies or read other buckets.
set -eu

: "${MINIO_URL:=http://minio:9000}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set: run infra/provision_secrets.sh}"
: "${S3_BUCKET:?S3_BUCKET is not set}"
: "${S3_APP_ACCESS_KEY:?S3_APP_ACCESS_KEY is not set}"
: "${S3_APP_SECRET_KEY:?S3_APP_SECRET_KEY is not set: run infra/provision_secrets.sh}"
policy_name="${S3_APP_ACCESS_KEY}-bucket"

if [ "$S3_APP_ACCESS_KEY" = "$MINIO_ROOT_USER" ]; then
    echo "S3_APP_ACCESS_KEY must differ from MINIO_ROOT_USER: the app gets its own user" >&2
    exit 2
fi

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$S3_BUCKET"

# What myspinbot/storage/s3.py does: HeadBucket and listing (s3:ListBucket), objects
# read, written (multipart for large files), deleted in batches. No bucket creation or
# deletion, no policy or ACL changes, nothing outside this bucket.
policy_file="${TMPDIR:-/tmp}/$policy_name.json"
cat > "$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$S3_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts"
      ],
      "Resource": ["arn:aws:s3:::$S3_BUCKET/*"]
    }
  ]
}
JSON
# `policy create` replaces a policy of the same name; `user add` sets the secret of an
# existing user; `policy attach` of an attached policy succeeds (mc 2024-11 and later).
mc admin policy create local "$policy_name" "$policy_file"
mc admin user add local "$S3_APP_ACCESS_KEY" "$S3_APP_SECRET_KEY"
mc admin policy attach local "$policy_name" --user "$S3_APP_ACCESS_KEY"
rm -f "$policy_file"
echo "bucket $S3_BUCKET ready; user $S3_APP_ACCESS_KEY limited to it by policy $policy_name"
