"""Each notebook's lesson module, lessonNN.py: its Your-turn task, its exercises' checks, its
highlights. Installed with the course as `course_lessons`, so that a notebook finds its lesson
wherever it is opened (course_utils.grading.lesson_module)."""
