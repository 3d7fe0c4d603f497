"""One Curator ProcessingStage per module, in pipeline order (see nemo_twvlm.curation.pipeline)."""
