"""Browser pages under /crm/: the board, lead pages, mailboxes and the sales pages (all in `crm/pages/`)."""

from django.urls import include, path

from crm.pages import board

urlpatterns = [
    path("board", board.board, name="crm-board"),
    path("board/columns/<uuid:stage_id>", board.board_column, name="crm-board-column"),
    path("board/columns/<uuid:stage_id>/cards", board.board_column_cards, name="crm-board-column-cards"),
    path("leads/<uuid:lead_id>", board.lead_detail, name="crm-lead"),
    path("leads/<uuid:lead_id>/timeline", board.lead_timeline, name="crm-lead-timeline"),
    path("", include("crm.pages.mailboxes")),  # /crm/connections*: mailbox OAuth pages
    path("", include("crm.pages.urls")),  # dashboard, tasks, companies, contacts, search
]
