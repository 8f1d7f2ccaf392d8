from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.index),
    path("hello/<str:name>/", views.hello),
]
