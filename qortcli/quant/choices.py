"""The optimiser's choices: allocation models, risk measures and rebalance frequencies. Plain constants (no
numerical imports), so the settings' validation and the command line's option lists cost no pandas import."""

#: allocation models (riskfolio-lib: hierarchical clustering and mean-risk portfolios)
MODELS = ("hrp", "herc", "max-sharpe", "min-risk", "risk-parity")
#: the hierarchical-clustering models among them
HC_MODELS = ("hrp", "herc")
#: riskfolio-lib risk measure codes offered: variance, CVaR, conditional drawdown at risk, max drawdown
RISK_MEASURES = ("MV", "CVaR", "CDaR", "MDD")
#: walk-forward rebalance frequency name → pandas period code
REBALANCE_FREQUENCIES = {"weekly": "W", "monthly": "M", "quarterly": "Q"}
