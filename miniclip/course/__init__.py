"""The course: what the notebooks need and a library user does not.

Lesson scale, the shared main run, figures, widgets, exercise checkers, the student-notebook generator and the
demo. It imports the probes and the library; nothing below it imports the course.
"""
