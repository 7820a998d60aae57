"""Storage: the only package that imports SQLAlchemy. Models, repositories, the batched writer."""
