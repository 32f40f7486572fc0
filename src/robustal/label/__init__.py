"""Labeling your own images with robust active learning (``robustal label``).

`robustal.label.project.LabelProject` is a project folder: images, the queue of what to ask,
the append-only label log (SQLite, robustal.label.store); `robustal.label.trainer` trains a
round in a background process; `robustal.label.exchange` exports and imports labels;
`robustal.label.server` (the optional extra ``robustal[label]``) serves the labeling page.
Nothing here imports the web server's libraries except the server module.
"""
