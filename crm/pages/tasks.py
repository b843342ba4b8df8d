"""`/crm/tasks`: my open tasks by due period, marked done and rescheduled in place (htmx).

The list is `crm.selectors.tasks.open_tasks_grouped` (one bounded query per group). Marking done,
undoing it and rescheduling are POSTs to page endpoints that call
`crm.services.activities.activity_update`, the service behind `PATCH /api/crm/activities/{id}`,
with its rules (completing sets `completedAt`, reopening clears it). With htmx the answer is the
re-rendered groups plus out-of-band updates (the "completed just now" list, the status line);
without it, a redirect back to the page.

Everyone sees their own tasks; choosing another assignee (a member, everyone, unassigned) is for
admins and owners, as in the roles of the entity (a member asking gets a 403). Any member may
complete or reschedule any task of the entity, as `PATCH /api/crm/activities/{id}` allows.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from axiomatic.errors import DomainError
from axiomatic.pages import entity_page
from axiomatic.roles import is_admin
from crm.choices import ActivityStatus, ActivityType
from crm.forms import TaskRescheduleForm
from crm.models import Activity
from crm.pages.common import OwnerFilter, entity_members, require_admin, with_query
from crm.selectors.owners import UNASSIGNED
from crm.selectors.tasks import open_tasks_grouped
from crm.services.activities import activity_update

ALL = "all"


def _assignee(request, raw: str | None, members) -> OwnerFilter:
    """`assignee` of the query string (or form): "me" (the default), or for admins "all",
    "unassigned" or a member's id (refused with a 403 for members; unknown values mean me)."""
    raw = (raw or "").strip()
    if raw in ("", "me", str(request.user.pk)):
        return OwnerFilter("me", request.user.pk)
    require_admin(request, doing="see other people's tasks")
    if raw == ALL:
        return OwnerFilter(ALL, None)
    chosen = OwnerFilter.parse(raw, user=request.user, members=members)
    return chosen if chosen is not None and chosen.value else OwnerFilter("me", request.user.pk)


def _groups_context(request, assignee: OwnerFilter) -> dict:
    return {
        "groups": open_tasks_grouped(entity=request.entity, assignee=assignee.selector),
        "assignee": assignee,
        "show_assignee": assignee.value != "me",
        "now": timezone.now(),
    }


@require_GET
@entity_page
def tasks(request):
    """The page: groups of open tasks, the assignee filter for admins, the "completed" list."""
    admin = is_admin(request.membership)
    members = entity_members(request.entity) if admin else []
    assignee = _assignee(request, request.GET.get("assignee"), members)
    context = {
        **_groups_context(request, assignee),
        "can_filter": admin,
        "members": [member for member in members if member.pk != request.user.pk],
        "assignee_all": ALL,
        "assignee_unassigned": UNASSIGNED,
    }
    return render(request, "crm/tasks.html", context)


def _task_or_404(request, task_id) -> Activity:
    tasks = Activity.objects.for_entity(request.entity).filter(type=ActivityType.TASK)
    return get_object_or_404(tasks.select_related("lead", "company", "contact", "assignee"), pk=task_id)


def _posted_assignee(request) -> OwnerFilter:
    """Whose tasks the page re-renders after a POST (checked before anything is written)."""
    members = entity_members(request.entity) if is_admin(request.membership) else []
    return _assignee(request, request.POST.get("assignee"), members)


def _answer(
    request,
    assignee: OwnerFilter,
    *,
    notice: str = "",
    error: str = "",
    done: Activity | None = None,
    reopened: Activity | None = None,
):
    """htmx: the groups again, with out-of-band updates; otherwise back to the page."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        params = {} if assignee.value == "me" else {"assignee": assignee.value}
        return HttpResponseRedirect(with_query(reverse("crm-tasks"), request, **params))
    context = {
        **_groups_context(request, assignee),
        "notice": notice,
        "error": error,
        "done": done,
        "reopened": reopened,
    }
    return render(request, "crm/_task_update.html", context)


def _update(task: Activity, **fields) -> str:
    """Apply the service; the refusal's sentence ("" when it went through)."""
    try:
        with transaction.atomic():
            activity_update(activity=task, **fields)
    except DomainError as error:
        return error.message
    return ""


@require_POST
@entity_page
def task_done(request, task_id):
    task = _task_or_404(request, task_id)
    assignee = _posted_assignee(request)
    error = _update(task, status=ActivityStatus.COMPLETED)
    if error:
        return _answer(request, assignee, error=f"Could not complete “{task.subject}”: {error}")
    return _answer(request, assignee, notice=f"Marked “{task.subject}” done.", done=task)


@require_POST
@entity_page
def task_reopen(request, task_id):
    task = _task_or_404(request, task_id)
    assignee = _posted_assignee(request)
    error = _update(task, status=ActivityStatus.OPEN)
    if error:
        return _answer(request, assignee, error=f"Could not reopen “{task.subject}”: {error}")
    return _answer(request, assignee, notice=f"Reopened “{task.subject}”.", reopened=task)


@require_POST
@entity_page
def task_reschedule(request, task_id):
    task = _task_or_404(request, task_id)
    assignee = _posted_assignee(request)
    form = TaskRescheduleForm(request.POST, entity=request.entity)
    if not form.is_valid():
        problems = " ".join(message for messages_ in form.errors.values() for message in messages_)
        return _answer(request, assignee, error=f"Could not reschedule “{task.subject}”: {problems}")
    error = _update(task, due_at=form.cleaned_data["due"])
    if error:
        return _answer(request, assignee, error=f"Could not reschedule “{task.subject}”: {error}")
    local = timezone.localtime(task.due_at, request.entity.tzinfo)
    return _answer(request, assignee, notice=f"Rescheduled “{task.subject}” to {local:%a %d %b %Y, %H:%M}.")
