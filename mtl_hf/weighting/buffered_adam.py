"""Adam whose moments live in buffers, for weighters that optimise a small vector of their own.

FAMO's task logits and GradNorm's task weights are updated by their own Adam, apart from the model's
optimizer. Keeping the moments and the step count as module buffers saves them with the model
(safetensors) and with training checkpoints, so a resumed run continues exactly. The arithmetic is
PyTorch's own (:func:`torch.optim.adam.adam`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.adam import adam
from transformers import initialization as init


class BufferedAdam(nn.Module):
    """Adam state (first and second moments, step count) for one tensor of ``shape``, held in buffers.

    Args:
        shape: Shape of the optimised tensor.
        lr: Learning rate.
        betas: Adam's ``(beta1, beta2)``.
        eps: Adam's epsilon.
        weight_decay: L2 penalty added to the gradient (``torch.optim.Adam``'s ``weight_decay``).
    """

    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    num_steps: torch.Tensor

    def __init__(
        self,
        shape: tuple[int, ...],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.register_buffer("exp_avg", torch.zeros(shape))
        self.register_buffer("exp_avg_sq", torch.zeros(shape))
        self.register_buffer("num_steps", torch.zeros(()))

    def init_parameters(self) -> None:
        init.zeros_(self.exp_avg)
        init.zeros_(self.exp_avg_sq)
        init.zeros_(self.num_steps)

    @torch.no_grad()
    def step(self, value: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Update ``value`` in place by one Adam step along ``grad``.

        Args:
            value: The optimised tensor (same shape as the state).
            grad: Its gradient.
            mask: Optional bool tensor: entries where it is False keep their value and moments.
        """
        before = None
        if mask is not None:
            before = (value.clone(), self.exp_avg.clone(), self.exp_avg_sq.clone())
        # torch's functional Adam wants a float step counter on the CPU.
        step = self.num_steps.detach().to("cpu", torch.float32).clone()
        adam(
            [value],
            [grad.to(value.dtype)],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [step],
            foreach=False,
            amsgrad=False,
            beta1=self.betas[0],
            beta2=self.betas[1],
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )
        self.num_steps.copy_(step)
        if before is not None and mask is not None:
            keep = ~mask
            for tensor, old in zip((value, self.exp_avg, self.exp_avg_sq), before, strict=True):
                tensor[keep] = old[keep]
