"""The HTTP shell end to end: register, upload, transform, wait, download, list, delete.

The first test goes over the wire to a real ``imgproc serve`` process; the others use the
in-process test client on the same adapters (SQLite, local files, Pillow, worker threads).
Every downloaded image is decoded with Pillow and checked for its size, format and pixels.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pillow_heif
import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

pytestmark = pytest.mark.e2e


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def source(corpus_dir: Path, name: str) -> Image.Image:
    with Image.open(corpus_dir / "pillow" / name) as image:
        return image.convert("RGB")


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    assert first.size == second.size
    diff = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def edge_energy(image: Image.Image) -> float:
    return sum(ImageStat.Stat(image.convert("L").filter(ImageFilter.FIND_EDGES)).mean)


def blob_files(storage_dir: Path) -> list[Path]:
    return sorted(path for path in storage_dir.rglob("*") if path.is_file())


# -- over the wire -------------------------------------------------------------------------------


def test_a_transformed_image_travels_over_http(live_api: Any, corpus_dir: Path) -> None:
    username = "wire-user"
    live_api.register(username)
    headers = live_api.login(username)

    original = live_api.upload(corpus_dir / "pillow" / "flower.jpg", headers)
    assert (original["format"], original["width"], original["height"]) == ("jpeg", 480, 360)

    derived = live_api.transform(
        original["id"], {"resize": {"width": 200}, "format": "webp"}, headers
    )
    assert derived["status"] in {"PENDING", "PROCESSING", "READY"}
    assert derived["is_transformed"] is True
    ready = live_api.wait_until_ready(derived["id"], headers)
    assert (ready["width"], ready["height"]) == (200, 150)

    redirect = live_api.redirect(derived["id"], headers)
    assert redirect.status_code == 307
    assert redirect.headers["cache-control"] == "no-store"
    blob = live_api.http.get(redirect.headers["location"])
    assert blob.status_code == 200
    assert blob.headers["content-type"] == "image/webp"
    assert blob.headers["cache-control"].startswith("private, max-age=")
    image = decode(blob.content)
    assert image.format == "WEBP"
    assert image.size == (200, 150)


# -- every operation ------------------------------------------------------------------------------

FLOWER = "flower.jpg"  # 480 x 360
HOPPER = "hopper.png"  # 128 x 128, lossless, for pixel-exact checks


@pytest.fixture
def user(api: Any) -> dict[str, str]:
    headers: dict[str, str] = api.register()
    return headers


def render(
    api: Any, corpus_dir: Path, user: dict[str, str], name: str, body: dict[str, Any]
) -> tuple[dict[str, Any], Image.Image, Any]:
    original = api.upload(corpus_dir / "pillow" / name, user)
    derived = api.transform(original["id"], body, user)
    entry = api.wait_until_ready(derived["id"], user)
    blob = api.download(derived["id"], user)
    return entry, decode(blob.content), blob


def test_a_heic_photograph_is_uploaded_and_becomes_a_jpeg(live_api: Any, corpus_dir: Path) -> None:
    headers = live_api.register()
    picture = Image.open(corpus_dir / "pillow" / "flower.jpg")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buffer, quality=85)
    files = {"file": ("IMG_0001.HEIC", buffer.getvalue(), "application/octet-stream")}

    uploaded = live_api.call("POST", "/images/", files=files, headers=headers, expect=201).json()
    derived = live_api.transform(uploaded["id"], {"resize": {"width": 240}}, headers)
    ready = live_api.wait_until_ready(derived["id"], headers)

    assert (uploaded["format"], uploaded["mimetype"]) == ("heic", "image/heic")
    assert (uploaded["width"], uploaded["height"]) == picture.size
    assert uploaded["filename"] == "IMG_0001.HEIC"
    assert (ready["format"], ready["width"], ready["height"]) == ("jpeg", 240, 180)
    assert decode(live_api.download(derived["id"], headers).content).format == "JPEG"


def test_an_upload_with_two_variants_gets_both_rendered(live_api: Any, corpus_dir: Path) -> None:
    headers = live_api.register()
    for name, spec in (
        ("thumb", {"resize": {"width": 120}, "format": "webp"}),
        ("square", {"resize": {"width": 64, "height": 64, "fit": "cover"}, "format": "png"}),
    ):
        live_api.call(
            "PUT", f"/presets/{name}", json={"transformation": spec}, headers=headers, expect=201
        )
    photo = corpus_dir / "pillow" / "flower.jpg"
    files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}

    answer = live_api.call(
        "POST", "/images/", files=files, data={"variants": "thumb,square"}, headers=headers
    )

    assert answer.status_code == 201, answer.text
    variants = {variant["preset"]: variant["id"] for variant in answer.json()["variants"]}
    assert list(variants) == ["thumb", "square"]
    thumb = live_api.wait_until_ready(variants["thumb"], headers)
    square = live_api.wait_until_ready(variants["square"], headers)
    assert (thumb["format"], thumb["width"], thumb["height"]) == ("webp", 120, 90)
    assert (square["format"], square["width"], square["height"]) == ("png", 64, 64)
    assert decode(live_api.download(variants["square"], headers).content).size == (64, 64)
    # Asking through the preset again is the same derivative, already made.
    again = live_api.transform(answer.json()["id"], {"preset": "thumb"}, headers)
    assert (again["id"], again["status"]) == (variants["thumb"], "READY")


@pytest.mark.parametrize(
    ("body", "size"),
    [
        pytest.param({"resize": {"width": 240, "height": 240}}, (240, 180), id="contain"),
        pytest.param(
            {"resize": {"width": 200, "height": 200, "fit": "cover"}}, (200, 200), id="cover"
        ),
        pytest.param(
            {"resize": {"width": 100, "height": 300, "fit": "fill"}}, (100, 300), id="fill"
        ),
        pytest.param({"resize": {"height": 90}}, (120, 90), id="height-only"),
        pytest.param({"resize": {"width": 1200}}, (1200, 900), id="upscale"),
    ],
)
def test_resize_fits_the_box(
    api: Any, user: dict[str, str], corpus_dir: Path, body: dict[str, Any], size: tuple[int, int]
) -> None:
    entry, image, _ = render(api, corpus_dir, user, FLOWER, {**body, "format": "png"})
    assert image.size == size
    assert (entry["width"], entry["height"]) == size


def test_crop_takes_the_rectangle(api: Any, user: dict[str, str], corpus_dir: Path) -> None:
    _, image, _ = render(
        api, corpus_dir, user, HOPPER, {"crop": {"x": 10, "y": 20, "width": 50, "height": 40}}
    )
    expected = source(corpus_dir, HOPPER).crop((10, 20, 60, 60))
    assert image.size == (50, 40)
    assert mean_difference(image, expected) < 0.5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"rotate": 90}, Image.Transpose.ROTATE_270, id="rotate-90-clockwise"),
        pytest.param({"rotate": 180}, Image.Transpose.ROTATE_180, id="rotate-180"),
        pytest.param({"flip": True}, Image.Transpose.FLIP_TOP_BOTTOM, id="flip"),
        pytest.param({"mirror": True}, Image.Transpose.FLIP_LEFT_RIGHT, id="mirror"),
    ],
)
def test_rotate_flip_and_mirror_move_pixels(
    api: Any,
    user: dict[str, str],
    corpus_dir: Path,
    body: dict[str, Any],
    expected: Image.Transpose,
) -> None:
    _, image, _ = render(api, corpus_dir, user, FLOWER, {**body, "format": "png"})
    want = source(corpus_dir, FLOWER).transpose(expected)
    assert image.size == want.size
    assert mean_difference(image, want) < 1.0
    # The operation really happened: the untouched source is far from the result.
    if want.size == source(corpus_dir, FLOWER).size:
        assert mean_difference(image, source(corpus_dir, FLOWER)) > 5.0


def test_grayscale_leaves_no_colour(api: Any, user: dict[str, str], corpus_dir: Path) -> None:
    _, image, _ = render(api, corpus_dir, user, FLOWER, {"grayscale": True, "format": "png"})
    rgb = image.convert("RGB")
    red, green, blue = rgb.split()
    assert ImageChops.difference(red, green).getbbox() is None
    assert ImageChops.difference(green, blue).getbbox() is None


def test_sepia_tints_brown(api: Any, user: dict[str, str], corpus_dir: Path) -> None:
    _, image, _ = render(
        api, corpus_dir, user, FLOWER, {"transformations": {"filters": {"sepia": True}}}
    )
    red, green, blue = ImageStat.Stat(image.convert("RGB")).mean
    assert red > green > blue


def test_blur_softens_and_sharpen_hardens(api: Any, user: dict[str, str], corpus_dir: Path) -> None:
    original = source(corpus_dir, HOPPER)
    _, blurred, _ = render(api, corpus_dir, user, HOPPER, {"blur": 3})
    _, sharpened, _ = render(api, corpus_dir, user, HOPPER, {"sharpen": 5})
    assert edge_energy(blurred) < 0.8 * edge_energy(original)
    assert edge_energy(sharpened) > 1.1 * edge_energy(original)


def test_text_watermark_marks_its_corner_only(
    api: Any, user: dict[str, str], corpus_dir: Path
) -> None:
    body = {"watermark": {"text": "(c) me", "position": "bottom-right", "opacity": 1.0}}
    _, image, _ = render(api, corpus_dir, user, FLOWER, {**body, "format": "png"})
    original = source(corpus_dir, FLOWER)
    quarter = (240, 180)
    top_left = (0, 0, *quarter)
    bottom_right = (240, 180, 480, 360)
    assert mean_difference(image.crop(top_left), original.crop(top_left)) < 0.5
    assert mean_difference(image.crop(bottom_right), original.crop(bottom_right)) > 0.5


def test_image_watermark_uses_another_image_of_the_caller(
    api: Any, user: dict[str, str], corpus_dir: Path
) -> None:
    mark = api.upload(corpus_dir / "pillow" / HOPPER, user)
    body = {
        "watermark": {
            "image_id": mark["id"],
            "position": "top-left",
            "opacity": 1.0,
            "scale": 0.25,
        },
        "format": "png",
    }
    _, image, _ = render(api, corpus_dir, user, FLOWER, body)
    original = source(corpus_dir, FLOWER)
    top_left = (0, 0, 100, 80)
    bottom_right = (240, 180, 480, 360)
    assert mean_difference(image.crop(top_left), original.crop(top_left)) > 5.0
    assert mean_difference(image.crop(bottom_right), original.crop(bottom_right)) < 0.5


@pytest.mark.parametrize(
    ("fmt", "pillow_format", "media_type"),
    [
        ("jpeg", "JPEG", "image/jpeg"),
        ("jpg", "JPEG", "image/jpeg"),
        ("png", "PNG", "image/png"),
        ("webp", "WEBP", "image/webp"),
        ("avif", "AVIF", "image/avif"),
        ("gif", "GIF", "image/gif"),
    ],
)
def test_each_output_format(
    api: Any, user: dict[str, str], corpus_dir: Path, fmt: str, pillow_format: str, media_type: str
) -> None:
    entry, image, blob = render(
        api, corpus_dir, user, HOPPER, {"resize": {"width": 64}, "format": fmt}
    )
    assert image.format == pillow_format
    assert image.size == (64, 64)
    assert blob.headers["content-type"] == media_type
    assert entry["mimetype"] == media_type
    assert entry["size_bytes"] == len(blob.content)


def test_quality_trades_bytes_for_fidelity(
    api: Any, user: dict[str, str], corpus_dir: Path
) -> None:
    original = api.upload(corpus_dir / "pillow" / FLOWER, user)
    sizes = {}
    for quality in (10, 95):
        derived = api.transform(original["id"], {"format": "jpeg", "quality": quality}, user)
        api.wait_until_ready(derived["id"], user)
        sizes[quality] = len(api.download(derived["id"], user).content)
    assert sizes[10] < sizes[95] / 2


# -- listing, metadata, deletion, idempotence ---------------------------------------------------


def test_list_pages_newest_first(api: Any, user: dict[str, str], corpus_dir: Path) -> None:
    uploaded = [
        api.upload(corpus_dir / "pillow" / name, user)["id"]
        for name in ("hopper.png", "hopper.jpg", "hopper.gif")
    ]
    others = api.register()
    api.upload(corpus_dir / "pillow" / "hopper.bmp", others)

    first = api.call("GET", "/images?page=1&limit=2", headers=user, expect=200).json()
    second = api.call(
        "GET", "/images", params={"page": 2, "limit": 2}, headers=user, expect=200
    ).json()
    beyond = api.call("GET", "/images?page=3&limit=2", headers=user, expect=200).json()

    assert (first["page"], first["limit"], first["total"]) == (1, 2, 3)
    assert [item["id"] for item in first["items"]] == uploaded[::-1][:2]
    assert [item["id"] for item in second["items"]] == uploaded[::-1][2:]
    assert beyond["items"] == []
    assert beyond["total"] == 3
    default = api.call("GET", "/images", headers=user, expect=200).json()
    assert (default["page"], default["limit"]) == (1, 10)


def test_metadata_of_an_original_and_of_a_derived_image(
    api: Any, user: dict[str, str], corpus_dir: Path
) -> None:
    original = api.upload(corpus_dir / "pillow" / FLOWER, user, filename="../../my holiday.jpg")
    found = api.metadata(original["id"], user)
    assert found == original
    assert found["filename"] == "my holiday.jpg"
    assert (found["mimetype"], found["format"], found["status"]) == ("image/jpeg", "jpeg", "READY")
    assert found["size_bytes"] == (corpus_dir / "pillow" / FLOWER).stat().st_size
    assert found["is_transformed"] is False
    assert found["source_id"] is None
    assert found["storage_url"].endswith(f"/api/v1/images/{original['id']}")

    derived = api.transform(original["id"], {"rotate": 90, "grayscale": True}, user)
    ready = api.wait_until_ready(derived["id"], user)
    assert ready["source_id"] == original["id"]
    assert ready["transformation"]["rotate"] == 90
    assert ready["transformation"]["grayscale"] is True
    assert ready["transformation"]["format"] == "jpeg"
    assert (ready["width"], ready["height"]) == (360, 480)


def test_delete_removes_the_image_its_derivatives_and_their_blobs(
    embedded: Any, open_api: Any, corpus_dir: Path
) -> None:
    with open_api(embedded) as api:
        user = api.register()
        keep = api.upload(corpus_dir / "pillow" / HOPPER, user)
        original = api.upload(corpus_dir / "pillow" / FLOWER, user)
        derived = api.transform(original["id"], {"resize": {"width": 100}}, user)
        api.wait_until_ready(derived["id"], user)
        api.download(derived["id"], user)
        assert len(blob_files(embedded.storage_dir)) == 3

        api.call("DELETE", f"/images/{original['id']}", headers=user, expect=204)

        assert [path.name for path in blob_files(embedded.storage_dir)] == [f"{keep['id']}.png"]
        for image_id in (original["id"], derived["id"]):
            assert api.redirect(image_id, user).status_code == 404
            api.metadata(image_id, user, expect=404)
        listed = api.call("GET", "/images", headers=user, expect=200).json()
        assert [item["id"] for item in listed["items"]] == [keep["id"]]
        api.call("DELETE", f"/images/{original['id']}", headers=user, expect=404)


def test_the_same_transformation_twice_is_one_image_and_one_job(
    make_app: Any, open_api: Any, corpus_dir: Path
) -> None:
    embedded = make_app(worker_threads=0)
    with open_api(embedded) as api:
        user = api.register()
        original = api.upload(corpus_dir / "pillow" / FLOWER, user)
        first = api.transform(original["id"], {"resize": {"width": 100}, "grayscale": True}, user)
        again = api.transform(
            original["id"], {"grayscale": True, "resize": {"width": 100, "fit": "contain"}}, user
        )
        envelope = api.transform(
            original["id"],
            {"transformations": {"resize": {"width": 100}, "filters": {"grayscale": True}}},
            user,
        )
        assert first == again == envelope
        assert first["status"] == "PENDING"

        not_ready = api.redirect(first["id"], user)
        assert not_ready.status_code == 202
        assert not_ready.json()["status"] == "PENDING"
        assert int(not_ready.headers["retry-after"]) >= 1

        with embedded.container.unit_of_work() as uow:
            assert uow.jobs.pending_count() == 1
            assert [image.id for image in uow.images.list_derivatives(original["id"])] == [
                first["id"]
            ]


def test_signed_urls_cannot_be_altered_or_stripped(
    api: Any, user: dict[str, str], corpus_dir: Path
) -> None:
    original = api.upload(corpus_dir / "pillow" / HOPPER, user)
    location = api.redirect(original["id"], user).headers["location"]
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query))
    assert api.http.get(location).status_code == 200

    stripped = urlunsplit(parts._replace(query=""))
    assert api.http.get(stripped).status_code == 404
    tampered = {**query, "expires": str(int(query["expires"]) + 3600)}
    response = api.http.get(urlunsplit(parts._replace(query=urlencode(tampered))))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


# -- operations and documentation ---------------------------------------------------------------


def test_health_readiness_and_metrics(api: Any, user: dict[str, str], corpus_dir: Path) -> None:
    assert api.http.get("/healthz").json() == {"status": "ok"}
    ready = api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": "ok",
        "queue": "ok",
        "storage": "ok",
        "cache": "ok",
    }

    uploaded = api.call(
        "POST",
        "/images/",
        files={"file": ("hopper.png", (corpus_dir / "pillow" / HOPPER).read_bytes())},
        headers=user,
        expect=201,
    )
    assert int(uploaded.headers["ratelimit-limit"]) == 1000
    assert int(uploaded.headers["ratelimit-remaining"]) == 999
    assert "ratelimit-reset" in uploaded.headers
    derived = api.transform(uploaded.json()["id"], {"rotate": 90}, user)
    api.wait_until_ready(derived["id"], user)

    metrics = api.http.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'imgproc_http_requests_total{method="POST",route="/api/v1/images",status="201"} 1.0' in text
    )
    assert "imgproc_http_request_duration_seconds_bucket{" in text
    assert 'imgproc_images{status="READY"} 2.0' in text
    assert "imgproc_queue_depth 0.0" in text


def test_openapi_documents_every_endpoint(api: Any) -> None:
    schema = api.http.get("/schema/openapi.json").json()
    operations = {
        (method.upper(), path) for path, item in schema["paths"].items() for method in item
    }
    assert {
        ("POST", "/api/v1/register"),
        ("POST", "/api/v1/login"),
        ("POST", "/api/v1/images"),
        ("GET", "/api/v1/images"),
        ("GET", "/api/v1/images/{image_id}"),
        ("GET", "/api/v1/images/{image_id}/metadata"),
        ("POST", "/api/v1/images/{image_id}/transform"),
        ("DELETE", "/api/v1/images/{image_id}"),
        ("POST", "/api/v1/images/{image_id}/links"),
        ("GET", "/api/v1/images/{image_id}/links"),
        ("DELETE", "/api/v1/links/{link_id}"),
        ("GET", "/d/{token}"),
        ("PUT", "/api/v1/presets/{name}"),
        ("GET", "/api/v1/presets"),
        ("GET", "/api/v1/presets/{name}"),
        ("DELETE", "/api/v1/presets/{name}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    } <= operations
    transform = schema["paths"]["/api/v1/images/{image_id}/transform"]["post"]
    body = transform["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/TransformRequest")
    error = transform["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert error["$ref"].endswith("/Problem")
    assert api.http.get("/schema/swagger").status_code == 200
