"""Views of the test project."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mscomm_sync.django import caller, caller_required


@csrf_exempt
def charge(request: Any) -> JsonResponse:
    """Echo the amount and the verified caller from request.META."""
    payload = json.loads(request.body)
    return JsonResponse({"amount": payload["amount"], "caller": request.META["mscomm.caller"]})


def health(request: Any) -> JsonResponse:
    """A plaintext health check (an exempt path)."""
    return JsonResponse({"ok": True, "caller": caller(request)})


@caller_required("shipping")
def only_shipping(request: Any) -> HttpResponse:
    """A view only the shipping service may call."""
    return HttpResponse(b"hello shipping", content_type="text/plain")


def boom(request: Any) -> HttpResponse:
    """A view that fails."""
    raise RuntimeError("secret-traceback-marker")


@csrf_exempt
def nothing(request: Any) -> HttpResponse:
    """Answer 204 No Content."""
    return HttpResponse(status=204)


@csrf_exempt
def ran(request: Any) -> JsonResponse:
    """Record that this view ran (for the routing-attack tests) and say which path it was."""
    from support.apps import record_run

    record_run(request.path_info, caller(request))
    return JsonResponse({"ran": request.path_info, "caller": caller(request)})
