"""The task: what is asked, its categories and label codecs, and its answer format."""
