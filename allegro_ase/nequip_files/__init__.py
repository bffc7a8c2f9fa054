"""Files of the reference framework (``nequip`` / ``nequip-allegro``), read without nequip.

=====================  ==============================  =====================================
file                   what it is                      how it is read
=====================  ==============================  =====================================
``*.ckpt``             Lightning training checkpoint   ``torch.load(weights_only=True)``;
                                                       builder arguments from its hyper-
                                                       parameters; EMA weights when kept
``*.nequip.zip``       ``nequip-package`` archive      zip + YAML config + pickled module
                                                       tree read as inert records
``*.nequip.pth``       TorchScript (``nequip-compile``)  compiled code: opt-in only
``*.nequip.pt2``       AOTInductor (``nequip-compile``)  compiled code: opt-in only
``nequip.net:`` id     a published model               downloaded once, sha256-checked
=====================  ==============================  =====================================

One job per module: :mod:`.kinds` (which file), :mod:`.unpickler` (pickles without code),
:mod:`.checkpoint` and :mod:`.package` (reading), :mod:`.wrappers` (fine-tuning wrappers and
modifiers), :mod:`.builders` (builder arguments -> our configs), :mod:`.module_tree` (packaged
module tree -> builder arguments), :mod:`.weights` (their tensors -> our parameters),
:mod:`.rebuild` (the whole route), :mod:`.compiled` (compiled files), :mod:`.hub` (nequip.net).
"""

from .kinds import COMPILED_KINDS, KINDS, NequIPFileError, nequip_file_kind
from .rebuild import load_nequip_model, model_from_reference

__all__ = [
    "COMPILED_KINDS",
    "KINDS",
    "NequIPFileError",
    "load_nequip_model",
    "model_from_reference",
    "nequip_file_kind",
]
