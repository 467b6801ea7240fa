"""The course: what the notebooks need and a library user does not.

    lesson.py             how big a lesson is on this machine (Lesson, start_lesson)
    main_run.py           the data of a lesson and the one main run that lessons 4-8 share
    figures.py            plots of data, training and evaluation
    diagrams.py           figures of lessons 1-4 that take the model apart
    widgets.py            the interactive apps of lessons 5 and 6
    checkers.py           cmp and CheckResult: checking an exercise against the library's own code
    check_lessons_1_4.py  check_lessons_5_8.py: the exercise checkers of each lesson
    student.py            the student notebooks, solutions cut out (`make student`)
    demo.py               `miniclip demo`: train, evaluate and draw the shapes-tiny model
    claims.py             claim(holds, text): a lesson's sentence checked against its own numbers (`make claims`)
    predictions.py        ask() and reveal(): predict an outcome, then measure it
    lesson_plots.py       figures of single lessons: the temperature sweep (3), prompt styles (5)
    alt_text.py           the shapes world with alt-text captions, for prompt engineering (5)
    objectives.py         bag-of-words and captioning objectives, the predictive rivals of CLIP's (9)
    objective_runs.py     training the three objectives alike and reading their zero-shot curves (9)
    maps.py               attention and occlusion maps on the patch grid (9)
    scaling.py            FLOPs per pair and the power-law fit of a scaling sweep (9)
    standins.py           offline stand-ins in the real formats: COCO, Karpathy, Hub parquet, CIFAR-10
    standin_clip.py       a tiny randomly initialised transformers CLIP, with its BPE tokenizer files
    setup.py              the repository URL of the badges and setup cells (`python -m miniclip.course.setup set-url`)

It imports the probes and the library; nothing below it imports the course.
"""
