"""Between the schema form rows (plain dicts) and the scene's setting properties."""

from .preferences import state
from .settings_form import form_rows

DEFAULT_JOB_TYPE = "simple-blender-render"  # the manager's default too
VALUE_PROPERTY = {
    "string": "string_value",
    "int32": "int_value",
    "float": "float_value",
    "bool": "bool_value",
}


def value_property(item) -> str:
    return "choice_value" if item.has_choices else VALUE_PROPERTY[item.setting_type]


def rows_of(submission) -> list[dict]:
    """The form as settings_form rows, read from the scene's properties."""
    return [
        {
            "key": item.key,
            "type": item.setting_type,
            "has_eval": item.has_eval,
            "eval_toggle": item.eval_toggle,
            "optional": item.optional,
            "auto": item.auto,
            "enabled": item.enabled,
            "value": getattr(item, VALUE_PROPERTY[item.setting_type]),
        }
        for item in submission.settings
    ]


def rebuild_form(submission) -> None:
    """Rows for the chosen job type; values the artist set before are kept."""
    job_type = state().job_type(submission.job_type_name)
    if job_type is None and state().job_types:
        job_type = state().job_type(DEFAULT_JOB_TYPE) or state().job_types[0]
        submission.job_type_name = job_type["name"]
    previous = {row["key"]: row for row in rows_of(submission)}
    submission.settings.clear()
    submission.type_etag = job_type["etag"] if job_type else ""
    for row in form_rows(job_type["settings"] if job_type else [], previous):
        item = submission.settings.add()
        item.key, item.setting_type = row["key"], row["type"]
        item.label, item.description = row["label"], row["description"]
        item.has_choices = bool(row["choices"])
        item.has_eval, item.eval_toggle = row["has_eval"], row["eval_toggle"]
        item.optional, item.auto, item.enabled = row["optional"], row["auto"], row["enabled"]
        value = row["value"]
        if row["type"] == "string" and row["choices"] and value not in row["choices"]:
            value = row["choices"][0]
        setattr(item, VALUE_PROPERTY[row["type"]], value)
