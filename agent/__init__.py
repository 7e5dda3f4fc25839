"""The researcher: turns a parent program and its context into a Proposal (see agent.proposers)."""
