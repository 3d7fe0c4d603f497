"""One Curator ProcessingStage per module, grouped by concern, in pipeline order (see
nemo_twvlm.curation.pipeline): io/ -> filters/ -> models/ -> dedup/ -> write/. `base.py` holds the
task protocol every stage shares (`CurationStage`), load-on-first-use and fan-in."""
