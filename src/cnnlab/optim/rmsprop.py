"""RMSprop (Hinton's lecture 6e), as torch.optim.RMSprop."""

import numpy as np

from cnnlab.optim.optimizer import Optimizer, check_hyperparameter


class RMSprop(Optimizer):
    """RMSprop, PyTorch's update rule. For each parameter p with gradient g:

        g = g + weight_decay * p                      (if weight_decay != 0)
        s = alpha * s + (1 - alpha) * g^2
        a = a + (1 - alpha) * (g - a); d = sqrt(s - a^2) + eps   (if centered)
        d = sqrt(s) + eps                                        (otherwise)
        b = momentum * b + g / d; p = p - lr * b                 (if momentum > 0)
        p = p - lr * g / d                                       (otherwise)

    Args:
        params: iterable of parameters (or of parameter-group dicts).
        lr: Default: 1e-2.
        alpha: smoothing constant. Default: 0.99.
        eps: Default: 1e-8.
        weight_decay: coupled L2 decay. Default: 0.
        momentum: Default: 0.
        centered: normalise by the estimated variance of the gradient. Default: False.

    State per parameter: "step", "square_avg", "momentum_buffer", "grad_avg".
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        check_hyperparameter("RMSprop", "lr", lr)
        check_hyperparameter("RMSprop", "alpha", alpha)
        check_hyperparameter("RMSprop", "eps", eps)
        check_hyperparameter("RMSprop", "weight_decay", weight_decay)
        check_hyperparameter("RMSprop", "momentum", momentum)
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": bool(centered)}
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(param.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(param.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(param.data)
        state["step"] += 1
        alpha = group["alpha"]
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.data
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (grad - grad_avg)
            denominator = np.sqrt(square_avg - grad_avg * grad_avg) + group["eps"]
        else:
            denominator = np.sqrt(square_avg) + group["eps"]
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += grad / denominator
            param.data -= group["lr"] * buffer
        else:
            param.data -= group["lr"] * grad / denominator
