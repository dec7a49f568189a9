"""Stand-in for transformers' ``tests/utils/test_configuration_utils.py``, which its source distribution
lacks.

``ConfigTester.check_config_arguments_init`` reads ``config_common_kwargs`` (non-default values of the
arguments every ``PreTrainedConfig`` takes) and returns early for a config with sub-configs, as
:class:`mtl_hf.MTLConfig` is (its backbone). The values below are such arguments, with non-default
values, in case the check ever runs.
"""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
