"""Browser pages under /crm/ (the board and lead pages). /crm/connections* is wired separately."""

from django.urls import include, path

from crm import views

urlpatterns = [
    path("board", views.board, name="crm-board"),
    path("board/columns/<uuid:stage_id>", views.board_column, name="crm-board-column"),
    path("board/columns/<uuid:stage_id>/cards", views.board_column_cards, name="crm-board-column-cards"),
    path("leads/<uuid:lead_id>", views.lead_detail, name="crm-lead"),
    path("leads/<uuid:lead_id>/timeline", views.lead_timeline, name="crm-lead-timeline"),
    path("", include("crm.pages.urls")),  # dashboard, tasks, companies, contacts, search
]
