"""Reinforcement learning on the order book: a batched environment built on ``trading``, PPO/DQN agents.

Domain code (no MLflow): ``day`` loads a replayed day, ``env`` is the simulator and its gymnasium /
stable-baselines3 interfaces, ``actions`` maps the discrete actions to orders, ``policy`` runs an agent
through the trading backtest, ``agent`` trains and loads policies, ``evaluate`` compares them with the
simple policies in the same simulator, ``live`` runs a trained policy one book update at a time (the
paper trader's ``rl`` policy, its observation equal to the environment's).
"""
