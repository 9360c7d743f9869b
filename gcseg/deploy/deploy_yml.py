"""The file an export writes beside the model: ``deploy.yml`` (PaddleSeg's name) or FastDeploy's
``inference.yml`` (``export.py --for_fd``), and reading its ``Deploy`` section back."""
import os
from typing import Dict

import yaml

from gcseg.errors import UsageError

DEPLOY_FILE = "deploy.yml"
FASTDEPLOY_DEPLOY_FILE = "inference.yml"


def read_deploy(model_dir: str) -> Dict:
    """The ``Deploy`` section of ``deploy.yml`` (or of FastDeploy's ``inference.yml``)."""
    found = [os.path.join(model_dir, name) for name in (DEPLOY_FILE, FASTDEPLOY_DEPLOY_FILE)
             if os.path.isfile(os.path.join(model_dir, name))]
    if not found:
        raise UsageError(f"{model_dir}: no {DEPLOY_FILE} or {FASTDEPLOY_DEPLOY_FILE} (is this a "
                         f"directory written by scripts/export.py?)")
    with open(found[0], encoding="utf-8") as handle:
        return yaml.safe_load(handle)["Deploy"]
