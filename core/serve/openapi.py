"""The server's OpenAPI 3.1 description (``/openapi.json``) and a plain page of it (``/docs``),
hand-written: six routes need no schema generator, and the page no CDN (as Swagger UI would)."""

from __future__ import annotations

import html

_ERROR = {"type": "object", "required": ["error", "status"],
          "properties": {"error": {"type": "string", "description": "What went wrong and how to fix it."},
                         "status": {"type": "integer"}}}


def _err(text: str) -> dict:
    return {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _prediction_schema(classes: list[str], unknown: dict | None) -> dict:
    """One prediction's schema; ``unknown``: the applied known-score rule (/metadata), or None."""
    top = {"type": "object", "properties": {"class": {"type": "string", "enum": classes},
                                             "probability": {"type": "number"}}}
    known = {} if unknown is None else {
        "known_score": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": f"How much the photo looks like the training images ({unknown.get('score')} "
                                       f"score); known at >= {unknown.get('threshold')} (/metadata 'unknown')."},
        "unknown": {"type": "boolean", "description": "true: the photo is none of the classes (known_score below "
                                                      "the threshold); 'class' is what it would have been."}}
    return {
        "type": "object", "required": ["name", "class", "probability", "top", "probabilities", *known],
        "properties": {
            "name": {"type": "string", "description": "The upload's file name (raw uploads: ?name=, else 'upload')."},
            "class": {"type": "string", "enum": classes,
                      "description": "The most probable class (for an unknown photo: the class it would be)."},
            "probability": {"type": "number"},
            "top": {"type": "array", "items": top, "description": "The top_k classes, most probable first."},
            "probabilities": {"type": "array", "items": {"type": "number"},
                              "description": "One per class, in class_names order."},
            **known,
        }}


def openapi_spec(info: dict) -> dict:
    """The OpenAPI document for a server of the model described by ``info`` (/metadata)."""
    limits = info["limits"]
    classes = info["class_names"]
    unknown = info.get("unknown") or {}
    applied = bool(unknown.get("applied"))
    prediction = _prediction_schema(classes, unknown if applied else None)
    image_types = {t: {"schema": {"type": "string", "format": "binary"}}
                   for t in ("image/jpeg", "image/png", "image/bmp", "image/gif", "application/octet-stream")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "clf serve", "version": info["clf_version"],
                 "description": f"Image classifier: {info['backbone']} on {info['input_size'][1]}x"
                                f"{info['input_size'][0]} px, classes {', '.join(classes)}; artifact "
                                f"{info['artifact']['file']} ({info['artifact']['runtime']})."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify one or more images",
                "description": (
                    f"Send image files as multipart/form-data (any field name; up to {limits['max_images']} "
                    f"a request) or one image's raw bytes with an image/* Content-Type. Each image is "
                    f"decoded, centre-cropped and resized exactly as 'clf predict' does. Limits: "
                    f"{limits['max_upload_bytes']} bytes a request, {limits['max_pixels']} pixels an image, "
                    f"{limits['max_request_pixels']} pixels a request. Nothing is ever fetched from a URL or a path."
                    + (f" Each prediction carries the model's known_score; below {unknown.get('threshold')} the "
                       f"photo is unknown (unknown: true), none of the classes." if applied else "")),
                "parameters": [
                    {"name": "top_k", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1,
                                "default": min(limits["top_k"], info["num_classes"])},
                     "description": "Classes in each prediction's 'top' (capped at the number of classes)."},
                    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "The image's name in the answer, for a raw-bytes upload."},
                ],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                    **image_types}},
                "responses": {
                    "200": {"description": "One prediction per image, in upload order.",
                            "content": {"application/json": {"schema": {
                                "type": "object", "required": ["class_names", "predictions"],
                                "properties": {"class_names": {"type": "array", "items": {"type": "string"}},
                                               "predictions": {"type": "array", "items": prediction}}}}}},
                    "400": _err("No image in the request, an empty file, a bad top_k, or a Host header not allowed."),
                    "408": _err("The body took longer than the request timeout to arrive."),
                    "413": _err("The body is over the upload limit, too many images, or too many pixels in an image or in the request."),
                    "415": _err("Not an image, an image format TensorFlow does not read, or another Content-Type."),
                    "422": _err("A truncated or corrupt image."),
                    "503": _err("The queue is full, or the server is shutting down; the Retry-After header says when to try again."),
                    "504": _err("No answer (decoding and prediction) within the request timeout."),
                }}},
            "/metadata": {"get": {"summary": "The model: class names, backbone, input size, preprocessing, "
                                             "the known-score rule ('unknown': output, threshold, score kind, "
                                             "applied; null without one), artifact format, clf version, and "
                                             "the server's limits",
                                  "responses": {"200": {"description": "Model and server description.",
                                                        "content": {"application/json": {}}}}}},
            "/health": {"get": {"summary": "Liveness, the queue and batching counters",
                                "responses": {"200": {"description": "status 'ok' once the model is loaded.",
                                                      "content": {"application/json": {}}}}}},
            "/": {"get": {"summary": "A page to drop photos on and see their top classes",
                          "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1 JSON"}}}},
            "/docs": {"get": {"summary": "This document as a page",
                              "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
        },
        "components": {"schemas": {"Error": _ERROR}},
    }


def docs_page(spec: dict) -> str:
    """The routes of ``spec`` as a small self-contained HTML page."""
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = "".join(f"<li><code>{html.escape(p['name'])}</code> ({p['in']}): "
                             f"{html.escape(p.get('description', ''))}</li>" for p in op.get("parameters", []))
            codes = "".join(f"<li><code>{c}</code> {html.escape(r['description'])}</li>"
                            for c, r in op["responses"].items())
            rows.append(f"<section><h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                        f"<p>{html.escape(op['summary'])}</p>"
                        f"<p>{html.escape(op.get('description', ''))}</p>"
                        f"{'<h3>Parameters</h3><ul>' + params + '</ul>' if params else ''}"
                        f"<h3>Responses</h3><ul>{codes}</ul></section>")
    title = html.escape(spec["info"]["title"])
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title} API</title>"
            f"<link rel=icon href='data:,'><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:52em;"
            f"margin:2em auto;padding:0 1em}}code{{background:#f3f3f3;padding:0 .2em}}</style></head><body>"
            f"<h1>{title} API</h1><p>{html.escape(spec['info']['description'])}</p>"
            f"<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI {spec['openapi']}). "
            f"Try it on <a href='/'>the page</a>.</p>{''.join(rows)}</body></html>")
