"""What a node keeps of the database between transactions that another node may change, and
the entry points that make it forget (the cluster's bus calls them when it hears of a change).

With several writers on one database (PostgreSQL, MySQL/MariaDB), nothing the writer caches
can make it accept what the committed rows refuse:

- sequence numbers are never cached: each batch reads them under the conversation row's lock;
- a group's member list is used only if the team row's ``version``, read under the same lock,
  is the one it was loaded at; outside the writer the rows are read each time;
- users: only a deletion (final) is cached; that a user exists is asked once per batch;
- pair -> chat id stays cached: a pair's row is created once (its unique key) and never
  deleted or moved, so an id, once committed, is right forever.

So the entry points below free memory and make a change seen sooner; correctness does not
wait on the bus, which may lose a message when Redis blips.
"""

from __future__ import annotations

from imhub.storage.teams import Teams
from imhub.storage.users import KnownUsers


class StorageCaches:
    def __init__(self, users: KnownUsers, teams: Teams) -> None:
        self._users = users
        self._teams = teams

    def forget_user(self, user_id: int) -> None:
        """Another node deleted or changed this user."""
        self._users.invalidate(user_id)

    def forget_team(self, team_id: int) -> None:
        """Another node changed this group (members, name, dissolved)."""
        self._teams.forget(team_id)

    def forget_all(self) -> None:
        """After a gap in what the bus delivered (Redis restarted): forget everything."""
        self._users.invalidate()
        self._teams.forget()
