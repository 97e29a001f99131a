"""The lab's errors, each with its HTTP status; the app answers them as JSON {"error": "..."}.

    400 BadRequest   a parameter or body the lab cannot use (a body that is not an image)
    403 Forbidden    a Host header that is not the lab's, or a missing or wrong session token
    404 NotFound     a name that is not a run of RUNS_DIR, or something the run lacks
    409 Conflict     training is already running, or the name is taken
    413 TooLarge     a body over the upload limit
"""


class LabError(Exception):
    status = 500


class BadRequest(LabError):
    status = 400


class Forbidden(LabError):
    status = 403


class NotFound(LabError):
    status = 404


class Conflict(LabError):
    status = 409


class TooLarge(LabError):
    status = 413
