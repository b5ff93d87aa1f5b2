"""Lets Formgrader find the course when JupyterLab is started at the project root.

The real configuration lives in assignments/nbgrader_config.py; this file only
loads it, so nothing is said twice.
"""
import os

c = get_config()  # noqa: F821
load_subconfig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "assignments", "nbgrader_config.py"))  # noqa: F821
