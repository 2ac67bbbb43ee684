"""Layer 8: training — plan (what to run), parts (what to run it with), the loss, the teacher, the loop."""
