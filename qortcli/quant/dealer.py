"""Dealer-position conventions for gamma exposure (`qortcli.quant.market`): which side of the customers' options the
dealers are assumed to hold. Plain constants (no numerical imports), so the command line can list them cheaply."""

#: convention name → (sign of the dealers' call position, sign of their put position)
DEALER_CONVENTIONS = {"long-calls-short-puts": (1, -1), "short-calls-long-puts": (-1, 1),
                      "long-all": (1, 1), "short-all": (-1, -1)}
DEFAULT_DEALER = "long-calls-short-puts"
#: convention name → what it assumes, in words
DEALER_DESCRIPTIONS = {
    "long-calls-short-puts": "dealers long calls, short puts (customers net short calls, net long puts)",
    "short-calls-long-puts": "dealers short calls, long puts (customers net long calls, net short puts)",
    "long-all": "dealers long every option (customers net short all)",
    "short-all": "dealers short every option (customers net long all)",
}

