"""Routes for groups: every operation of the protocol (msgTypes 16 to 22), by a user the
backend names, under the same rules; and a group as the backend sees it."""

from __future__ import annotations

from aiohttp import web

from imhub.http.inputs import body_of, params_of
from imhub.http.models import TeamAnswer, TeamPath, TeamRequest
from imhub.http.responses import json_response
from imhub.http.routes import Handler, Params, Route
from imhub.protocol.messages import ImMsg, MsgType
from imhub.service.conversations import Membership
from imhub.service.teams import TeamService

# path → (operation, what it does, which fields it reads, statuses it may answer)
OPS: dict[str, tuple[MsgType, str, str, tuple[int, ...]]] = {
    "create": (MsgType.TEAM_CREATE, "Create a group", "`teamName` (1 to 50 characters) and "
               "`memberIds`; the acting user is the owner. With exactly one other member, a "
               "one-to-one chat instead: `chatId` and `toUserId`.", (404,)),
    "add": (MsgType.TEAM_ADD, "Add members", "`teamId`, `memberIds`; the owner only.",
            (403, 404)),
    "remove": (MsgType.TEAM_REMOVE, "Remove members", "`teamId`, `memberIds`; the owner only,"
               " not themself.", (403, 404)),
    "leave": (MsgType.TEAM_LEAVE, "Leave a group", "`teamId`; any member but the owner (409).",
              (403, 404, 409)),
    "rename": (MsgType.TEAM_RENAME, "Rename a group", "`teamId`, `teamName`; any member.",
               (403, 404)),
    "dismiss": (MsgType.TEAM_DISMISS, "Dissolve a group", "`teamId`; the owner only.",
                (403, 404)),
    "info": (MsgType.TEAM_INFO, "Read a group as a member", "`teamId`; members only.",
             (403, 404)),
}  # fmt: skip

COMMON = """`userId` is the user acting: the rules are those of the protocol (docs/protocol.md,
Groups). A change is an event in the group's stream, delivered to every member's connections;
a change that changes nothing answers the group without `seq`. """


def team_answer(msg: ImMsg) -> TeamAnswer:
    return TeamAnswer(
        member_ids=msg.member_ids or [],
        team_id=msg.team_id,
        team_name=msg.team_name,
        owner_id=msg.owner_id,
        seq=msg.seq,
        chat_id=msg.chat_id,
        to_user_id=msg.to_user_id,
    )


class TeamRoutes:
    def __init__(self, teams: TeamService, membership: Membership) -> None:
        self._teams = teams
        self._membership = membership

    def routes(self) -> list[Route]:
        out = [
            Route("POST", f"/api/v1/teams/{name}", self._handler(op), summary, TeamRequest,
                  TeamAnswer, errors=errors, tag="groups", description=COMMON + fields)
            for name, (op, summary, fields, errors) in OPS.items()
        ]  # fmt: skip
        out.append(
            Route("GET", "/api/v1/teams/{teamId}", self.read, "Read a group", answer=TeamAnswer,
                  params=TeamPath, errors=(404,), tag="groups",
                  description="Its name, owner and members, whoever asks (no acting user).")
        )  # fmt: skip
        return out

    def _handler(self, op: MsgType) -> Handler:
        async def handle(request: web.BaseRequest, params: Params) -> web.StreamResponse:
            req = await body_of(request, TeamRequest)
            if op == MsgType.TEAM_INFO:
                answer = await self._teams.info(req.user_id, req.team_id)
            else:
                answer = await self._teams.change(
                    op, req.user_id, team_id=req.team_id, name=req.team_name,
                    member_ids=req.member_ids,
                )  # fmt: skip
            return json_response(team_answer(answer))

        return handle

    async def read(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        info = await self._membership.info(params_of(params, TeamPath).team_id)
        return json_response(
            TeamAnswer(
                member_ids=sorted(info.members),
                team_id=info.team_id,
                team_name=info.name,
                owner_id=info.owner,
            )
        )
