"""A baseline that behaves like the S3 guide's Python code (written for the benchmark, not copied).

What it keeps from the guide: one boto3 client and its default presigning,
a new psycopg2 connection for every save, no authentication, no check that
the object exists. The only change: an endpoint for the local S3 server.
"""

from __future__ import annotations

import os
import uuid

import boto3
import psycopg2
from flask import Flask, jsonify, request


def create_app() -> Flask:
    """Build the baseline app from the same environment as the service."""
    app = Flask(__name__)
    bucket = os.environ["S3_BUCKET_NAME"]
    region = os.environ["AWS_REGION"]
    s3 = boto3.client(
        "s3",
        region_name=region,
        endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    database_url = os.environ["DATABASE_URL"]

    @app.post("/presign-upload")
    def presign_upload():  # type: ignore[no-untyped-def]
        data = request.get_json()
        file_name, content_type = data.get("fileName"), data.get("contentType")
        if not file_name or not content_type:
            return jsonify({"success": False, "error": "fileName and contentType required"}), 400
        object_key = f"{uuid.uuid4()}-{file_name}"
        url = s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": object_key, "ContentType": content_type},
            ExpiresIn=300,
        )
        public = f"https://{bucket}.s3.{region}.amazonaws.com/{object_key}"
        return jsonify(
            {"success": True, "presignedUrl": url, "objectKey": object_key, "publicFileUrl": public}
        )

    @app.post("/save-metadata")
    def save_metadata():  # type: ignore[no-untyped-def]
        data = request.get_json()
        object_key = data.get("objectKey")
        if not object_key:
            return jsonify({"success": False, "error": "objectKey required"}), 400
        conn = psycopg2.connect(database_url)  # a new connection per save, as the guide does
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO s3_files (object_key, file_url, user_id) VALUES (%s, %s, %s)",
                    (object_key, data.get("publicFileUrl") or "", "user_123"),
                )
            conn.commit()
        finally:
            conn.close()
        return jsonify({"success": True}), 201

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ok"})

    return app
