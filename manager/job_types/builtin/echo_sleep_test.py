"""echo-sleep-test: misc tasks that echo and sleep, to exercise a farm without Blender."""

JOB_TYPE = {
    "label": "Echo and sleep (test)",
    "description": "Misc tasks that print a message and sleep; exercises a farm without Blender.",
    "settings": [
        {"key": "message", "type": "string", "default": "hello from framefarm"},
        {"key": "tasks", "type": "int32", "default": 3, "description": "how many tasks"},
        {"key": "sleep_seconds", "type": "float", "default": 0.5},
        {
            "key": "chain",
            "type": "bool",
            "default": False,
            "description": "each task waits for the one before",
        },
    ],
}


def compile_job(job):
    count = job.settings["tasks"]
    if not 1 <= count <= 10_000:
        raise ValueError("tasks must be between 1 and 10000")
    previous = None
    for number in range(1, count + 1):
        task = job.add_task(f"echo-sleep-{number}", "misc")
        task.add_command("echo", message=f"{job.settings['message']} ({number}/{count})")
        task.add_command("sleep", seconds=job.settings["sleep_seconds"])
        if job.settings["chain"] and previous is not None:
            task.depends_on(previous)
        previous = task
