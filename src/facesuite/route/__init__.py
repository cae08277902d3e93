"""Routes: what each distortion type's face goes through before and while it is matched.

``restore`` (restoration steps: median filter, grey-level opening) and ``routes`` (the shipped
table of which step each type takes and whether it is also embedded mirrored, and the :class:`~facesuite.route.routes.Router`
that embeds faces through them).
"""
