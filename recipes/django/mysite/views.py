import os

from django.http import HttpResponse, JsonResponse


def index(request):
    return HttpResponse("Hello from Django, served by circus worker %d\n" % os.getpid())


def hello(request, name):
    return JsonResponse({"hello": name, "pid": os.getpid()})
