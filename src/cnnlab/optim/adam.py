"""Adam and AdamW (Kingma and Ba 2015; Loshchilov and Hutter 2019), as torch.optim."""

import numpy as np

from cnnlab.optim.optimizer import Optimizer, check_hyperparameter


class Adam(Optimizer):
    """Adam, PyTorch's update rule. At step t, for each parameter p with gradient g:

        g = g + weight_decay * p                      (coupled L2, if weight_decay != 0)
        m = m + (1 - beta1) * (g - m)                 (= beta1 * m + (1 - beta1) * g)
        v = beta2 * v + (1 - beta2) * g^2
        v_max = max(v_max, v), used for v            (if amsgrad)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Args:
        params: iterable of parameters (or of parameter-group dicts).
        lr: Default: 1e-3.
        betas: (beta1, beta2), decay rates of the moment estimates. Default: (0.9, 0.999).
        eps: Default: 1e-8.
        weight_decay: coupled L2 decay added to the gradient. Default: 0.
        amsgrad: use the maximum of the second-moment estimates. Default: False.

    State per parameter: "step", "exp_avg" (m), "exp_avg_sq" (v), "max_exp_avg_sq".
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        name = type(self).__name__
        check_hyperparameter(name, "lr", lr)
        check_hyperparameter(name, "eps", eps)
        check_hyperparameter(name, "weight_decay", weight_decay)
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        check_hyperparameter(name, "beta1", betas[0], 0.0, 1.0, high_open=True)
        check_hyperparameter(name, "beta2", betas[1], 0.0, 1.0, high_open=True)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": bool(amsgrad)}
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param.data)
            state["exp_avg_sq"] = np.zeros_like(param.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param.data)
        state["step"] += 1
        lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
        if decay != 0:
            if self.decoupled_weight_decay:
                param.data *= 1 - lr * decay
            else:
                grad = grad + decay * param.data
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]
        step_size = lr / (1 - beta1 ** state["step"])
        denominator = np.sqrt(exp_avg_sq) / (1 - beta2 ** state["step"]) ** 0.5 + group["eps"]
        param.data -= step_size * exp_avg / denominator


class AdamW(Adam):
    """Adam with decoupled weight decay: before the Adam step, p = p * (1 - lr * weight_decay),
    outside the adaptive scaling (not added to the gradient).

    Args: as `Adam`, with weight_decay Default: 1e-2.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
