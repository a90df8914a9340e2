"""Google Cloud Storage for tests: the project's fake-gcs-server, a fresh bucket per test, and
service-account keys made on the spot.

``gcs_blob_storage(request, clock)`` has the shape of the BlobStorage contract's
implementations: ``pytest.param(gcs_blob_storage, id="gcs", marks=pytest.mark.integration)``.
Each call makes a bucket with a random name and removes it, with what it holds, when the test
ends.

The emulator comes from ``IMGPROC_TEST_GCS_ENDPOINT`` when it is set, else from
``scripts/services/gcs.sh start``. When neither gives an emulator that answers, the test fails
loudly: an integration test never skips for want of its storage.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from imgproc_core.adapters.gcs import GcsBlobStorage
from imgproc_core.ports.clock import Clock

ROOT: Final = Path(__file__).resolve().parents[2]
GCS_SCRIPT: Final = ROOT / "scripts" / "services" / "gcs.sh"
GCS_ENDPOINT_VARIABLE: Final = "IMGPROC_TEST_GCS_ENDPOINT"
#: Buckets this module creates start with this, so a leftover one is easy to recognise.
TEST_BUCKET_PREFIX: Final = "imgproc-t-"
TEST_PROJECT: Final = "imgproc-test"
TEST_SERVICE_ACCOUNT: Final = "imgproc-signer@imgproc-test.iam.gserviceaccount.com"


@functools.cache
def gcs_endpoint() -> str:
    """The URL of a running storage emulator, started on first use; fails the test if none."""
    endpoint = os.environ.get(GCS_ENDPOINT_VARIABLE) or _start_private_emulator()
    endpoint = endpoint.rstrip("/")
    try:
        with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=5) as response:
            status = response.status
    except (OSError, urllib.error.URLError) as exc:
        status = f"no answer ({exc})"
    if status != 200:
        pytest.fail(
            f"the storage emulator at {endpoint} does not answer GET /storage/v1/b with 200: "
            f"{status}. Start it with `{GCS_SCRIPT.relative_to(ROOT)} start`, or point "
            f"{GCS_ENDPOINT_VARIABLE} at one.",
            pytrace=False,
        )
    return endpoint


def _start_private_emulator() -> str:
    def run(command: str) -> str:
        try:
            done = subprocess.run(
                [str(GCS_SCRIPT), command],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"{GCS_SCRIPT} {command} could not run: {exc}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"{GCS_SCRIPT} {command} failed with exit code {done.returncode} and "
                f"{GCS_ENDPOINT_VARIABLE} is not set; the integration tests need a storage "
                f"emulator.\n{done.stdout}{done.stderr}",
                pytrace=False,
            )
        return done.stdout.strip()

    run("start")
    return run("endpoint")


def emulator_client(endpoint: str) -> Any:
    """A client of the emulator, for what the storage under test does not do itself."""
    return storage.Client(
        project=TEST_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def gcs_blob_storage(
    request: pytest.FixtureRequest, clock: Clock, **options: Any
) -> GcsBlobStorage:
    """A storage on a new bucket of the emulator, removed when the test ends. ``options`` go to
    :class:`GcsBlobStorage` (``credentials_file``, ``list_page_size``, ...)."""
    endpoint = gcs_endpoint()
    bucket = f"{TEST_BUCKET_PREFIX}{uuid.uuid4().hex[:20]}"
    blob_storage = GcsBlobStorage(
        bucket, emulator_host=endpoint, project=TEST_PROJECT, clock=clock, **options
    )
    assert blob_storage.ensure_bucket()
    request.addfinalizer(functools.partial(remove_bucket, endpoint, bucket))
    return blob_storage


def remove_bucket(endpoint: str, name: str) -> None:
    """Delete the bucket ``name`` and everything in it (any number of objects)."""
    client = emulator_client(endpoint)
    bucket = client.bucket(name)
    for blob in client.list_blobs(bucket):
        blob.delete()
    bucket.delete()


@dataclass(frozen=True)
class ServiceAccountKey:
    file: Path
    email: str
    public_key: rsa.RSAPublicKey


def write_service_account_key(folder: Path, email: str = TEST_SERVICE_ACCOUNT) -> ServiceAccountKey:
    """A service-account key file, in the format Google issues, for a fresh 2048-bit RSA key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    info = {
        "type": "service_account",
        "project_id": TEST_PROJECT,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = folder / "service-account.json"
    path.write_text(json.dumps(info))
    return ServiceAccountKey(file=path, email=email, public_key=private_key.public_key())
