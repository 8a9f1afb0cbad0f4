"""Training and conversion code (never imported by inference)."""
from pathlib import Path

# The training text's alphabet: what the corpus samples, the fonts are subset to, the distillation
# labels come from, and what the shipped classifier keeps beside GB2312 (`classes`).
TEXT_CHARSET = Path(__file__).with_name("text_charset.txt")
