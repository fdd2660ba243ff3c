CREATE TABLE products (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(200)  NOT NULL,
    description TEXT          NULL,
    price       DECIMAL(12,2) NOT NULL,
    stock       INT UNSIGNED  NOT NULL DEFAULT 0,
    version     INT           NOT NULL DEFAULT 1,
    created_at  DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT products_price_nonnegative CHECK (price >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE orders (
    id              BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    product_id      BIGINT        NOT NULL,
    quantity        INT           NOT NULL,
    unit_price      DECIMAL(12,2) NOT NULL,
    total           DECIMAL(14,2) NOT NULL,
    status          VARCHAR(16)   NOT NULL DEFAULT 'pending',
    idempotency_key VARCHAR(255)  NULL,
    created_at      DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT orders_quantity_positive CHECK (quantity > 0),
    CONSTRAINT orders_status_known CHECK (status IN ('pending','paid','shipped','delivered','cancelled')),
    CONSTRAINT orders_product_fk FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE RESTRICT,
    UNIQUE KEY orders_idempotency_key (idempotency_key),
    KEY orders_product_id (product_id, id),
    KEY orders_status_id (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE idempotency_keys (
    idem_key     VARCHAR(255) NOT NULL PRIMARY KEY,
    request_hash BINARY(32)   NOT NULL,
    status_code  INT          NULL,
    body         MEDIUMBLOB   NULL,
    created_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY idempotency_keys_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
