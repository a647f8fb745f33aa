"""Dragonfly (any Redis-protocol server): live stream events and their replay buffer."""
