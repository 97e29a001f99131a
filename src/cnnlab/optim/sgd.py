"""Stochastic gradient descent, with momentum (heavy ball or Nesterov), as torch.optim.SGD."""

from cnnlab.optim.optimizer import Optimizer, check_hyperparameter


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update rule. For each parameter p with gradient g:

        g = g + weight_decay * p                      (if weight_decay != 0)
        b = g at the first step, else momentum * b + (1 - dampening) * g   (if momentum != 0)
        g = g + momentum * b if nesterov else b       (if momentum != 0)
        p = p - lr * g

    Args:
        params: iterable of parameters (or of parameter-group dicts).
        lr: learning rate.
        momentum: Default: 0.
        dampening: Default: 0.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0). Default: False.
        weight_decay: coupled L2 decay, the gradient of (weight_decay / 2) * |p|^2.
            Default: 0.

    State per parameter: "momentum_buffer" (when momentum != 0).
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        name = "SGD"
        check_hyperparameter(name, "lr", lr)
        check_hyperparameter(name, "momentum", momentum)
        check_hyperparameter(name, "dampening", dampening)
        check_hyperparameter(name, "weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening 0")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "nesterov": bool(nesterov), "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group):
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.data
        momentum = group["momentum"]
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()
            else:
                buffer = state["momentum_buffer"]
                buffer *= momentum
                buffer += (1 - group["dampening"]) * grad
            buffer = state["momentum_buffer"]
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param.data -= group["lr"] * grad
