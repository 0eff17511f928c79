"""Quality statistics over plain arrays: agreement, gold accuracy, position bias, anomalies.

No ORM in here (see DESIGN.md): `feedback.services.quality` reads the rows through a selector, turns them
into numpy arrays, calls these functions and stores what they return. So each function is tested on
plain data, held equal to a reference implementation where one exists, and timed alone by
`bench/quality.py`.
"""
