"""The file an export writes beside the model: ``deploy.yaml`` (PaddleSeg's name) or
FastDeploy's ``inference.yml`` (``export.py --for_fd``), and reading its ``Deploy`` section back
(also from ``deploy.yml``, the name gcseg's earlier exports used)."""
import os
from typing import Dict

import yaml

from gcseg.errors import UsageError

DEPLOY_FILE = "deploy.yaml"
FASTDEPLOY_DEPLOY_FILE = "inference.yml"
DEPLOY_FILES = (DEPLOY_FILE, "deploy.yml", FASTDEPLOY_DEPLOY_FILE)  # the order they are looked for


def read_deploy(model_dir: str) -> Dict:
    """The ``Deploy`` section of the first of ``DEPLOY_FILES`` in ``model_dir``."""
    found = [os.path.join(model_dir, name) for name in DEPLOY_FILES
             if os.path.isfile(os.path.join(model_dir, name))]
    if not found:
        raise UsageError(f"{model_dir}: no {DEPLOY_FILE} or {FASTDEPLOY_DEPLOY_FILE} (is this a "
                         f"directory written by scripts/export.py?)")
    with open(found[0], encoding="utf-8") as handle:
        return yaml.safe_load(handle)["Deploy"]
