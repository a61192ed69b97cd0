import json

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from mscomm_sync.django import caller, caller_required


@csrf_exempt  # sealed, not a browser's request: the seal authenticates the caller
@caller_required("orders")  # any other verified caller gets 403
def charge(request):
    amount = json.loads(request.body)["amount"]
    return JsonResponse({"caller": caller(request), "charged": amount})


def health(request):  # exempt from sealing (settings.MSCOMM "exempt_paths")
    return HttpResponse("ok")
