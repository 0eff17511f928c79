"""Roles. Staff users are admins; everyone else gets their rights from one of these groups.

Annotators see the projects they are members of; data engineers read datasets over the REST API.
"""

ANNOTATORS_GROUP = "annotators"
DATA_ENGINEERS_GROUP = "data engineers"
ROLE_GROUPS = (ANNOTATORS_GROUP, DATA_ENGINEERS_GROUP)
