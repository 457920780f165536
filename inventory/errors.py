"""Domain errors of the inventory; each has a stable code and the HTTP status the API maps it to."""

from flashsale.errors import DomainError


class InventoryError(DomainError):
    code = "inventory_error"
    status = 409
    message = "The inventory refused this request."


class SoldOut(InventoryError):
    code = "sold_out"
    message = "Every unit of this drop is sold."


class LimitReached(InventoryError):
    code = "limit_reached"
    message = "You already have as many units of this drop as one customer may buy."


class InsufficientStock(InventoryError):
    code = "insufficient_stock"
    message = "Fewer units are left than you asked for."


class InventoryUnavailable(InventoryError):
    code = "inventory_unavailable"
    status = 503
    message = "Sales are paused for a moment while the stock is checked; try again shortly."


class QuantityBelowTaken(InventoryError):
    code = "quantity_below_sold"
    status = 400
    message = "The quantity cannot go below the units already sold or held."


class InvalidDrop(InventoryError):
    code = "invalid_request"
    status = 400
    message = "The drop's settings are not valid."
