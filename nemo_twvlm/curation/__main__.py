"""`python -m nemo_twvlm.curation --config-name pairs_zh_tw input_dir=IN output_dir=OUT [key=value ...]`"""
from nemo_twvlm.curation.cli import main

if __name__ == "__main__":
    main()
